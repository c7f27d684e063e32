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

Mean and 95% interval (Student t) over the fine-tuning seeds; the recipe is
in ``_zero_shot_tasks.py``.  The result file keeps every seed's scores and
every batch's seconds; ``--report`` prints its tables (``_zero_shot_tables.py``;
no fine-tuning).
Needs the ``zeroshot`` extra.  Example::

    python examples/zero_shot.py                       # 4 tasks x 3 seeds
    python examples/zero_shot.py --tasks rotten_tomatoes --seeds 1 --train-size 200
    python examples/zero_shot.py --report results/zero_shot/results.json
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List

import torch

from hsa_geo.experiments import load_result, provenance, save_json
from hsa_geo.zero_shot import attention_flops, inject, restore
from hsa_geo.zero_shot.tokens import SegmentForest

from _experiment import load_minilm
from _zero_shot_tables import TABLES, plot_sweep, report
from _zero_shot_tasks import (
    RECIPE,
    TASKS,
    Batches,
    Classifier,
    fine_tuned,
    on_device,
    scores,
    task_data,
)

HIERARCHIES = {'(2,2,2,2)': (2, 2, 2, 2), '(2,4,8,16)': (2, 4, 8, 16),
               '(7,7,7,7)': (7, 7, 7, 7), '(8,4,2)': (8, 4, 2)}
TABLE3_LAYERS = (3, 5)            # 0-based: layers 4 and 6 of 6
WIDTH, HEADS, NUM_LAYERS = 384, 12, 6


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


@torch.no_grad()
def evaluate(model: Classifier, batches: Batches, todo: List[dict],
             progress, desc: str) -> List[dict]:
    r"""Every configuration on every batch, the configurations taking turns
    batch by batch (so their times share the machine's load); every batch's
    seconds are kept (``'batch_seconds'``, their sum ``'seconds'``)."""
    preds = {c['name']: [] for c in todo}
    seconds: Dict[str, List[float]] = {c['name']: [] for c in todo}
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
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            seconds[config['name']].append(time.perf_counter() - start)
            restore(model.encoder)
            preds[config['name']].append(logits.argmax(-1).cpu())
        bar.update(1)
    bar.close()
    target = torch.cat(targets)
    return [dict({k: v for k, v in c.items() if k != 'forest'},
                 **scores(torch.cat(preds[c['name']]), target),
                 seconds=sum(seconds[c['name']]), batch_seconds=seconds[c['name']])
            for c in todo]


def flops_row(task: str, lengths: torch.Tensor) -> dict:
    r"""Attention MFLOPs of one impacted layer at the task's average length."""
    length = int(round(float(lengths.float().mean())))
    flops = attention_flops(length, WIDTH, HEADS, (2, 4, 8, 16))
    return dict(avg_length=length, softmax_mflops=flops.softmax / 1e6,
                hsa_mflops=flops.hsa / 1e6,
                paper_count_mflops=4 * length * length * WIDTH / 1e6)


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
                        help="test subset per task; a size at least the test split's "
                        'takes all of it (default: the sizes of TASKS)')
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
                        help='print a table of the results.json of an earlier run, with its '
                        'provenance, and exit (no fine-tuning, nothing written)')
    parser.add_argument('--table', default='table3', choices=TABLES,
                        help='the table --report prints: a row per task, a row per '
                        'configuration with all intervals, the per-seed differences to the '
                        'original model, or the Appendix L sweep (default: %(default)s)')
    parser.add_argument('--plot', metavar='PNG', default=None,
                        help='with --report: also draw the Appendix L plot of the file there')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    from functools import partial

    from tqdm.auto import tqdm
    args = parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report, args.table))
        if args.plot and not result['args']['no_sweep']:
            plot_sweep(result['results'], args.plot)
        return result['results']
    torch.set_num_threads(args.threads)
    progress = partial(tqdm, disable=args.quiet, file=sys.stderr)
    tokenizer, _ = load_minilm()
    results: Dict[str, dict] = {}
    path = osp.join(args.out, 'results.json')
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
        # after every task: a stopped run keeps the tasks it finished
        save_json(dict(args=vars(args), recipe=RECIPE, tasks=TASKS, results=results), path)
    result = dict(args=vars(args), recipe=RECIPE, tasks=TASKS, results=results,
                  provenance=provenance(args.device))
    save_json(result, path)
    with open(osp.join(args.out, 'table3.md'), 'w') as f:
        f.write('\n\n'.join(report(result, path, t) for t in TABLES) + '\n')
    if not args.no_sweep:
        plot_sweep(results, osp.join(args.out, 'appendix_l.png'))
    print(f"\nwrote {path}, table3.md{'' if args.no_sweep else ', appendix_l.png'}\n")
    print(report(result, path))
    return results


if __name__ == '__main__':
    main()
