r"""Zero-shot HSA as the paper ran it (Section 5.3, Table 3, Appendix L):
fine-tuned classifiers, softmax replaced by HSA in some layers, nothing
retrained.

Each task model is the offline all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads of
32) with mean pooling and a linear head, fine-tuned once per task and seed
with a fixed recipe (below) on a CPU-sized subset of a shipped corpus, each a
stand-in for a row of the paper's Table 3:

* ``rotten_tomatoes``: review snippets, fresh vs rotten (like SST-2);
* ``news_articles``: news articles cut to 128 tokens, 9 outlets (like AGNEWS);
* ``health_tweets``: tweets of 16 health news accounts;
* ``news_pairs``: a sentence-pair task built from the news articles (like
  QNLI / MRPC): does this sentence come from this article?  The first segment
  is a sentence, the second the article's first sentences without it;
  negatives take the sentence from another article of the same outlet.

The checkpoints are cached (``--cache``, never in git) and rebuilt when
missing or when the recipe changed.  Then, with no training at all, the same
head is evaluated (accuracy, macro precision, macro recall) with HSA injected
(:func:`hsa_geo.zero_shot.inject`):

* **Table 3**: HSA in layers 4 and 6 (every other layer of the upper half,
  like the paper's 7, 9, 11 of RoBERTa-base's 12), windows (2, 4, 8, 16),
  with and without ``include_self`` (the paper's HSA excludes self, the
  pre-trained models include it); attention FLOPs per impacted layer at the
  task's average length, softmax against HSA, and the wall-clock of the
  injected against the original model on the same batches, interleaved;
* **Appendix L**: HSA in layer SL and every other layer after it, SL over
  every layer, for the hierarchies (2,2,2,2), (2,4,8,16), (7,7,7,7), (8,4,2);
  bar plots per task as the paper draws them;
* **beyond the paper**, on the pair task: a segment-aware forest
  (:class:`~hsa_geo.zero_shot.tokens.SegmentForest`: ``[CLS]`` and every
  ``[SEP]`` children of the root, each segment its own windowed subtree)
  against plain windows, which straddle the two segments.

Mean and 95% interval (Student t) over the fine-tuning seeds.  The recipe:
AdamW, lr 1e-4, weight decay 0.01, 10% linear warm-up then linear decay,
batch 16, dropout 0.1 before the head, the epochs of :data:`TASKS`, all
parameters trained, the split fixed (seed 0), the fine-tuning seed the head's
initialisation and the batch order.  Needs the ``zeroshot`` extra.

Example::

    python examples/zero_shot.py                       # 4 tasks x 3 seeds
    python examples/zero_shot.py --tasks rotten_tomatoes --seeds 1 --train-size 200
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from hsa_geo.datasets import news_sentence_pairs, text_corpus, text_split
from hsa_geo.experiments import mean_ci95
from hsa_geo.zero_shot import attention_flops, inject, restore
from hsa_geo.zero_shot.tokens import SegmentForest

from _experiment import load_minilm

#: task: (corpus, max tokens, training subset, test subset, epochs); the
#: subsets are drawn from the fixed split's train and test parts
TASKS: Dict[str, Tuple[str, int, int, int, int]] = {
    'rotten_tomatoes': ('rotten_tomatoes', 64, 800, 150, 2),
    'news_articles': ('news_articles', 128, 800, 100, 3),
    'health_tweets': ('health_tweets', 64, 600, 150, 2),
    'news_pairs': ('news_sentence_pairs', 128, 800, 100, 3),
}
#: sentences of the article in the second segment of a pair
PASSAGE_SENTENCES = 2
#: the paper's Table 3 row it stands in for
PAPER_ROW = {'rotten_tomatoes': 'SST-2', 'news_articles': 'AGNEWS',
             'health_tweets': '-', 'news_pairs': 'QNLI / MRPC'}
HIERARCHIES = {'(2,2,2,2)': (2, 2, 2, 2), '(2,4,8,16)': (2, 4, 8, 16),
               '(7,7,7,7)': (7, 7, 7, 7), '(8,4,2)': (8, 4, 2)}
TABLE3_LAYERS = (3, 5)            # 0-based: layers 4 and 6 of 6
WIDTH, HEADS, NUM_LAYERS = 384, 12, 6
RECIPE = dict(lr=1e-4, weight_decay=0.01, warmup=0.1, batch_size=16, dropout=0.1,
              pooling='mean', split_seed=0, passage_sentences=PASSAGE_SENTENCES)


# ------------------------------------------------------------------ the task model
class Classifier(torch.nn.Module):
    r"""The pre-trained encoder, the mean of its valid tokens, a linear head."""
    def __init__(self, encoder, num_classes: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))


def task_data(task: str, train_size: Optional[int], test_size: Optional[int]):
    r"""``(train, test, classes)``: lists of texts (or sentence pairs) with
    label tensors, subsets of the fixed split (seed 0) of the task's corpus."""
    corpus_name, _, default_train, default_test, _ = TASKS[task]
    corpus = news_sentence_pairs(passage_sentences=PASSAGE_SENTENCES) \
        if corpus_name == 'news_sentence_pairs' else text_corpus(corpus_name)
    split = text_split(corpus.labels, seed=RECIPE['split_seed'])
    train = split['train'][:train_size or default_train]
    test = split['test'][:test_size or default_test]
    return corpus.subset(train), corpus.subset(test), corpus.classes


class Batches:
    r"""A tokenised set in batches of similar length (less padding)."""
    def __init__(self, tokenizer, corpus, max_length: int, batch_size: int,
                 sort: bool = True):
        texts = corpus.texts
        if isinstance(texts[0], tuple):
            enc = tokenizer([a for a, _ in texts], [b for _, b in texts], truncation=True,
                            max_length=max_length)
        else:
            enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.lengths = torch.tensor([len(ids) for ids in enc['input_ids']])
        order = self.lengths.argsort().tolist() if sort else list(range(len(texts)))
        self.batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            self.batches.append((tokenizer.pad({k: [enc[k][i] for i in rows] for k in enc},
                                               return_tensors='pt'),
                                 corpus.labels[rows]))

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def recipe_key(task: str, seed: int, train_size: int) -> str:
    spec = json.dumps(dict(RECIPE, task=task, seed=seed, train_size=train_size,
                           epochs=TASKS[task][4], max_length=TASKS[task][1]), sort_keys=True)
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def on_device(enc: dict, labels: torch.Tensor, device) -> tuple:
    r"""A batch's encoding and labels on :obj:`device`."""
    return {k: v.to(device) for k, v in enc.items()}, labels.to(device)


def fine_tuned(task: str, seed: int, train, classes, args, progress) -> Classifier:
    r"""The task model of :obj:`seed`, from the cache or fine-tuned now."""
    tokenizer, encoder = load_minilm()
    model = Classifier(encoder, len(classes), RECIPE['dropout']).to(args.device)
    key = recipe_key(task, seed, len(train))
    path = osp.join(args.cache, f'{task}_seed{seed}_{key}.pt')
    if osp.exists(path):
        model.load_state_dict(torch.load(path, weights_only=True, map_location=args.device))
        return model.eval()
    torch.manual_seed(seed)
    model.head.reset_parameters()
    batches = Batches(tokenizer, train, TASKS[task][1], RECIPE['batch_size'], sort=False)
    epochs = TASKS[task][4]
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE['lr'],
                                  weight_decay=RECIPE['weight_decay'])
    total = epochs * len(batches)
    warmup = max(1, int(RECIPE['warmup'] * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) /
                                                              max(1, total - warmup))))
    model.train()
    generator = torch.Generator().manual_seed(seed)
    bar = progress(total=total, desc=f'fine-tune {task} seed {seed}', leave=False)
    for _ in range(epochs):
        for i in torch.randperm(len(batches), generator=generator).tolist():
            enc, labels = on_device(*batches.batches[i], args.device)
            loss = F.cross_entropy(model(**enc), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f'{loss.item():.3f}')
    bar.close()
    os.makedirs(args.cache, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


# ---------------------------------------------------------------------- evaluation
def configs(task: str, sep_token_id: int, sweep: bool) -> List[dict]:
    r"""Every configuration evaluated on a task model: ``layers`` 0-based, a
    hierarchy (window sizes, or a segment-aware forest), ``include_self``."""
    out = [dict(name='original (softmax)', layers=None)]
    pair = task == 'news_pairs'
    for include_self in (False, True):
        out.append(dict(name=f'Table 3 (2,4,8,16) self={include_self}', group='table3',
                        layers=TABLE3_LAYERS, hierarchy=(2, 4, 8, 16),
                        include_self=include_self))
        if pair:
            out.append(dict(name=f'Table 3 segments (2,4,8,16) self={include_self}',
                            group='table3', layers=TABLE3_LAYERS, segments=True,
                            hierarchy=(2, 4, 8, 16), include_self=include_self))
    if sweep:
        for label, branching in HIERARCHIES.items():
            for first in range(NUM_LAYERS):
                out.append(dict(name=f'sweep {label} SL={first + 1}', group='sweep',
                                hierarchy_label=label, sl=first + 1,
                                layers=tuple(range(first, NUM_LAYERS, 2)),
                                hierarchy=branching, include_self=False))
        if pair:
            for first in range(NUM_LAYERS):
                out.append(dict(name=f'sweep segments (2,4,8,16) SL={first + 1}',
                                group='sweep', hierarchy_label='segments (2,4,8,16)',
                                sl=first + 1, layers=tuple(range(first, NUM_LAYERS, 2)),
                                hierarchy=(2, 4, 8, 16), segments=True, include_self=False))
    for config in out:
        if config.get('segments'):
            config['forest'] = SegmentForest(config['hierarchy'], sep_token_id)
    return out


def scores(pred: torch.Tensor, target: torch.Tensor) -> Dict[str, float]:
    r"""Accuracy and the macro precision and recall: scikit-learn's
    unweighted means over the classes present in prediction or target, a
    class never predicted with precision 0."""
    from sklearn.metrics import precision_recall_fscore_support
    precision, recall, _, _ = precision_recall_fscore_support(
        target.numpy(), pred.numpy(), average='macro', zero_division=0)
    return dict(accuracy=float((pred == target).float().mean()),
                precision=float(precision), recall=float(recall))


@torch.no_grad()
def evaluate(model: Classifier, batches: Batches, todo: List[dict],
             progress, desc: str) -> List[dict]:
    r"""Every configuration on every batch, the configurations taking turns
    batch by batch (so their times share the machine's load)."""
    preds = {c['name']: [] for c in todo}
    seconds = {c['name']: 0.0 for c in todo}
    targets = []
    bar = progress(total=len(batches), desc=desc, leave=False)
    device = next(model.parameters()).device
    for enc, labels in batches:
        targets.append(labels)
        enc, _ = on_device(enc, labels, device)
        for config in todo:
            if config['layers'] is not None:
                inject(model.encoder, layers=list(config['layers']),
                       hierarchy=config.get('forest', config.get('hierarchy')),
                       include_self=config['include_self'])
            start = time.perf_counter()
            logits = model(**enc)
            seconds[config['name']] += time.perf_counter() - start
            restore(model.encoder)
            preds[config['name']].append(logits.argmax(-1).cpu())
        bar.update(1)
    bar.close()
    target = torch.cat(targets)
    return [dict({k: v for k, v in c.items() if k != 'forest'},
                 **scores(torch.cat(preds[c['name']]), target),
                 seconds=seconds[c['name']]) for c in todo]


def flops_row(task: str, lengths: torch.Tensor) -> dict:
    r"""Attention MFLOPs of one impacted layer at the task's average length."""
    length = int(round(float(lengths.float().mean())))
    flops = attention_flops(length, WIDTH, HEADS, (2, 4, 8, 16))
    return dict(avg_length=length, softmax_mflops=flops.softmax / 1e6,
                hsa_mflops=flops.hsa / 1e6,
                paper_count_mflops=4 * length * length * WIDTH / 1e6)


# ------------------------------------------------------------------------ reporting
def summary(rows: List[dict], key: str) -> Tuple[float, float]:
    return mean_ci95([r[key] for r in rows])


def fmt(rows: List[dict], key: str) -> str:
    mean, half = summary(rows, key)
    return f'{mean:.3f} ± {half:.3f}' if len(rows) > 1 else f'{mean:.3f} (one seed)'


def table3(results: Dict[str, dict]) -> str:
    lines = ['| task (paper row) | avg len | model | accuracy | precision | recall | '
             'FL(M) softmax / HSA | time / original |',
             '|---|---|---|---|---|---|---|---|']
    for task, result in results.items():
        runs = result['runs']
        flops = result['flops']
        names = [c['name'] for c in runs[0]['configs']
                 if c['name'] == 'original (softmax)' or c.get('group') == 'table3']
        for name in names:
            rows = [next(c for c in run['configs'] if c['name'] == name) for run in runs]
            base = [next(c for c in run['configs'] if c['name'] == 'original (softmax)')
                    for run in runs]
            ratio = statistics.fmean(r['seconds'] / b['seconds']
                                     for r, b in zip(rows, base, strict=True))
            fl = flops['softmax_mflops'] if name.startswith('original') else \
                flops['hsa_mflops']
            label = 'original' if name.startswith('original') else \
                name.replace('Table 3 ', 'HSA ')
            lines.append(f"| {task} ({PAPER_ROW[task]}) | {flops['avg_length']} | {label} | "
                         f"{fmt(rows, 'accuracy')} | {fmt(rows, 'precision')} | "
                         f"{fmt(rows, 'recall')} | {fl:.3f} | {ratio:.2f}x |")
    return '\n'.join(lines)


def plot_sweep(results: Dict[str, dict], path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        runs = results[task]['runs']
        labels = list(dict.fromkeys(c['hierarchy_label'] for c in runs[0]['configs']
                                    if c.get('group') == 'sweep'))
        width = 0.8 / (len(labels) + 1)
        original = [next(c for c in run['configs'] if c['name'] == 'original (softmax)')
                    for run in runs]
        mean, half = summary(original, 'accuracy')
        ax.bar([NUM_LAYERS + 1], [mean], width=0.5, yerr=[half], color='black', label='OR')
        for j, label in enumerate(labels):
            means, halves = [], []
            for sl in range(1, NUM_LAYERS + 1):
                rows = [next(c for c in run['configs'] if c.get('group') == 'sweep' and
                             c['hierarchy_label'] == label and c['sl'] == sl) for run in runs]
                m, h = summary(rows, 'accuracy')
                means.append(m)
                halves.append(h)
            xs = [sl - 0.4 + width * (j + 0.5) for sl in range(1, NUM_LAYERS + 1)]
            ax.bar(xs, means, width=width, yerr=halves, label=label)
        ax.set_xticks(list(range(1, NUM_LAYERS + 1)) + [NUM_LAYERS + 1],
                      [str(i) for i in range(1, NUM_LAYERS + 1)] + ['OR'])
        ax.set_xlabel('SL (HSA in layer SL and every other layer after it)')
        ax.set_ylabel('test accuracy')
        ax.set_title(f'{task} ({len(runs)} seeds, 95% CI)', fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis='y', alpha=0.3)
        if ax is axes[0][0] or len(labels) > len(HIERARCHIES):  # e.g. the pairs' segments
            ax.legend(fontsize=7, loc='lower left')
    fig.suptitle('Zero-shot HSA in fine-tuned MiniLM (Appendix L protocol)', fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS),
                        help='(default: all)')
    parser.add_argument('--seeds', type=int, default=3, help='fine-tuning seeds (default: 3)')
    parser.add_argument('--train-size', type=int, default=None,
                        help='training subset per task (default: the sizes of TASKS)')
    parser.add_argument('--test-size', type=int, default=None,
                        help='test subset per task (default: the sizes of TASKS)')
    parser.add_argument('--no-sweep', action='store_true',
                        help='only the Table 3 configurations, not Appendix L')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (default: 2)')
    parser.add_argument('--cache', default=osp.join(osp.expanduser('~'), '.cache', 'hsa_geo',
                                                    'zero_shot'),
                        help='fine-tuned checkpoints (default: ~/.cache/hsa_geo/zero_shot)')
    parser.add_argument('--out', default='results/zero_shot',
                        help='tables, plot and JSON (default: results/zero_shot)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='where the models run (default: CUDA when available)')
    parser.add_argument('--report', metavar='RESULTS_JSON',
                        help='only write the table and the plot (to --out) from the '
                             'results.json of an earlier run')
    return parser.parse_args(argv)


def write_report(results: Dict[str, dict], seeds: int, out: str, sweep: bool) -> str:
    os.makedirs(out, exist_ok=True)
    text = ('Zero-shot HSA in fine-tuned all-MiniLM-L6-v2 (no retraining), test subsets; '
            f'mean ± 95% interval over {seeds} fine-tuning seed(s)\n\n' + table3(results))
    with open(osp.join(out, 'table3.md'), 'w') as f:
        f.write(text + '\n')
    if sweep:
        plot_sweep(results, osp.join(out, 'appendix_l.png'))
    return text


def main(argv=None) -> dict:
    from functools import partial

    from tqdm.auto import tqdm
    args = parse_args(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        results = saved['results']
        seeds = len(next(iter(results.values()))['runs'])
        print(write_report(results, seeds, args.out, not saved['args']['no_sweep']))
        return results
    torch.set_num_threads(args.threads)
    progress = partial(tqdm, disable=args.quiet, file=sys.stderr)
    tokenizer, _ = load_minilm()
    results: Dict[str, dict] = {}
    for task in args.tasks:
        train, test, classes = task_data(task, args.train_size, args.test_size)
        batches = Batches(tokenizer, test, TASKS[task][1], 32)
        todo = configs(task, tokenizer.sep_token_id, not args.no_sweep)
        runs = []
        for seed in range(args.seeds):
            model = fine_tuned(task, seed, train, classes, args, progress)
            runs.append(dict(seed=seed, configs=evaluate(
                model, batches, todo, progress, f'evaluate {task} seed {seed}')))
        results[task] = dict(runs=runs, flops=flops_row(task, batches.lengths),
                             train=len(train), test=len(test), classes=len(classes))
        original = [r['configs'][0]['accuracy'] for r in runs]
        print(f'{task}: {len(train)} train / {len(test)} test, fine-tuned accuracy '
              f'{statistics.fmean(original):.3f}', flush=True)
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, 'results.json'), 'w') as f:  # after every task
            json.dump(dict(args=vars(args), recipe=RECIPE, tasks=TASKS, results=results),
                      f, indent=1)
    with open(osp.join(args.out, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), recipe=RECIPE, tasks=TASKS, results=results), f,
                  indent=1)
    print('\n' + write_report(results, args.seeds, args.out, not args.no_sweep))
    print(f'\nwrote {args.out}/table3.md, results.json' +
          ('' if args.no_sweep else ', appendix_l.png'))
    return results


if __name__ == '__main__':
    main()
