r"""OGB molecular property prediction: GIN with a virtual node, PyG's GPS
(dense multi-head attention) and an HSA graph transformer, same budget.

The HSA model is GPS with its global attention replaced by Hierarchical
Self-Attention (Amizadeh et al., NeurIPS 2025) over each molecule's junction
tree (atoms -> rings and bonds -> molecule, built once by
:class:`hsa_geo.transforms.MoleculeHierarchy` as a ``pre_transform``).  The
three models share the atom/bond encoders, the local GINE message passing, the
readout and the head; they differ only in what is global: a virtual node, dense
attention, or hierarchical attention.

With no arguments the script trains all three on the offline
``ogbg-molfreesolv`` (built from the data shipped in ``hsa_geo/datasets/data/`` in OGB's own
format; scored by OGB's Evaluator) for 3 seeds x 30 epochs, seed-major (the
three models take turns, so their times per epoch share the machine's load),
on one CPU thread per process, prints a results table and writes learning
curves.  The docs' first table follows OGB's protocol of 10 seeds, with the
HSA model without position vectors (``hsa_nopos``) beside the three:

    python examples/ogbg_mol.py --seeds 10 --epochs 50 --model gin gps hsa hsa_nopos

The result file (``--out``/results.json) holds every seed's scores and every
epoch's time; ``--report`` prints its table again (no training), ``--table
ratios`` with the times as ratios to the first model only:

    python examples/ogbg_mol.py --report results/ogbg_mol/results.json

Data-parallel on N processes (gloo on CPU, nccl on GPU):

    torchrun --nproc_per_node=2 examples/ogbg_mol.py --epochs 1 --seeds 1
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler

from hsa_geo.datasets import OFFLINE_DATASETS, evaluator, ogb_dataset
from hsa_geo.experiments import (
    load_result,
    mean_std,
    plot_curves,
    provenance,
    provenance_note,
    save_json,
)
from hsa_geo.transforms import MoleculeHierarchy

from _experiment import OGBTask, higher_is_better
from _molecules import MolModel, loader_for

#: the models a run can train: ``hsa_nopos`` is the HSA model without the
#: junction tree's position vectors (``--pos-dim`` for ``hsa`` only)
MODELS = ('gin', 'gps', 'hsa', 'hsa_nopos')
MODEL_NAMES = {'gin': 'GIN-VN', 'gps': 'GPS (dense attention)', 'hsa': 'HSA-GPS (junction tree)',
               'hsa_nopos': 'HSA-GPS, no position vectors'}
#: the tables of ``--report``: seconds per epoch and their ratio to the first
#: model, or the ratio alone (one decimal)
TABLES = ('seconds', 'ratios')
METRIC_NAMES = {'rmse': 'RMSE', 'mae': 'MAE', 'rocauc': 'ROC-AUC', 'ap': 'AP',
                'acc': 'accuracy'}


# ------------------------------------------------------------------ training helpers
class Distributed:
    r"""Process-group facts; a single process is world size 1."""
    def __init__(self, device: str):
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        self.enabled = self.world_size > 1
        if self.enabled and not dist.is_initialized():
            backend = 'nccl' if device.startswith('cuda') else 'gloo'
            dist.init_process_group(backend)
        if device.startswith('cuda') and self.enabled:
            device = f'cuda:{self.local_rank}'
        self.device = torch.device(device)
        self.main = self.rank == 0

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def gather(self, tensor: Tensor) -> Tensor:
        if not self.enabled:
            return tensor
        parts: List[Optional[Tensor]] = [None] * self.world_size
        dist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)

    def close(self):
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def shard(index: Tensor, ctx: Distributed) -> Tensor:
    return index[ctx.rank::ctx.world_size]


def train_epoch(model, loader, optimizer, task: OGBTask, ctx: Distributed, progress=None):
    model.train()
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(ctx.device)
        optimizer.zero_grad()
        loss = task.loss(model(batch), batch.y)
        loss.backward()
        optimizer.step()
        total += loss.item() * batch.num_graphs
        count += batch.num_graphs
        if progress is not None:
            progress.update(1)
    return ctx.mean(total / max(count, 1))


@torch.no_grad()
def evaluate(model, dataset, index: Tensor, task: OGBTask, ogb_evaluator, ctx: Distributed,
             batch_size: int) -> float:
    r"""OGB metric on ``dataset[index]``; each rank predicts its shard (no
    padding, so no molecule counts twice) and the shards are gathered."""
    model.eval()
    part = shard(index, ctx)
    y_true, y_pred = [], []
    for batch in loader_for(model.kind)(dataset[part], batch_size=batch_size):
        batch = batch.to(ctx.device)
        y_pred.append(task.prediction(model(batch)).cpu())
        y_true.append(batch.y.cpu())
    empty = torch.empty(0, 1)  # a rank whose shard is empty
    y_true = ctx.gather(torch.cat(y_true) if y_true else empty)
    y_pred = ctx.gather(torch.cat(y_pred) if y_pred else empty)
    perm = ctx.gather(part).argsort()
    result = ogb_evaluator.eval({'y_true': y_true[perm], 'y_pred': y_pred[perm]})
    return float(result[ogb_evaluator.eval_metric])


def run(kind: str, seed: int, dataset, split, task: OGBTask, args, ctx: Distributed,
        ogb_evaluator) -> Dict[str, object]:
    from tqdm.auto import tqdm
    torch.manual_seed(seed)
    model = MolModel('hsa' if kind == 'hsa_nopos' else kind, args.hidden, args.layers,
                     task.out_channels, heads=args.heads, dropout=args.dropout,
                     pos_dim=0 if kind == 'hsa_nopos' else args.pos_dim).to(ctx.device)
    num_params = sum(p.numel() for p in model.parameters())
    trained = model
    if ctx.enabled:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == 'cuda' else None)
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split['train']), generator=generator)
    train_set = dataset[split['train'][order]]
    drop_last = len(train_set) > args.batch_size * ctx.world_size  # no batch of 1 for BatchNorm
    sampler = None
    if ctx.enabled:  # equal shards (DDP needs the same number of steps on every rank)
        sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=seed)
        loader = loader_for(model.kind)(train_set, batch_size=args.batch_size,
                                        sampler=sampler, drop_last=drop_last)
    else:
        loader = loader_for(model.kind)(train_set, batch_size=args.batch_size, shuffle=True,
                                        generator=generator, drop_last=drop_last)
    metric = ogb_evaluator.eval_metric
    better = higher_is_better(metric)
    history = []
    best = None
    epoch_times = []
    progress = tqdm(total=args.epochs * len(loader), disable=not ctx.main or args.quiet,
                    desc=f'{MODEL_NAMES[kind]} seed {seed}', leave=False, file=sys.stdout)
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        start = time.perf_counter()
        loss = train_epoch(trained, loader, optimizer, task, ctx, progress)
        epoch_times.append(time.perf_counter() - start)
        valid = evaluate(model, dataset, split['valid'], task, ogb_evaluator, ctx,
                         args.batch_size * 4)
        test = evaluate(model, dataset, split['test'], task, ogb_evaluator, ctx,
                        args.batch_size * 4)
        if not all(math.isfinite(v) for v in (loss, valid, test)):
            raise FloatingPointError(f'{kind} seed {seed} epoch {epoch}: loss {loss}, '
                                     f'valid {valid}, test {test}')
        history.append({'epoch': epoch + 1, 'loss': loss, f'valid_{metric}': valid,
                        f'test_{metric}': test, 'seconds': epoch_times[-1]})
        if best is None or (valid > best[0] if better else valid < best[0]):
            best = (valid, test, epoch + 1)  # epochs count from 1, as printed
        progress.set_postfix(loss=f'{loss:.3f}', valid=f'{valid:.3f}')
    progress.close()
    # the history keeps every epoch's time; epoch_time is their median
    return dict(model=kind, seed=seed, params=num_params, best_valid=best[0],
                test=best[1], best_epoch=best[2], epoch_time=upper_median(epoch_times),
                history=history)


# ------------------------------------------------------------------------ reporting
def upper_median(values: List[float]) -> float:
    return statistics.median(values)


def report(result: dict, path: str, table: str = 'seconds') -> str:
    r"""The table of a result file, with the line of its provenance.

    Per model: test and validation metric at the best-validation epoch, mean ±
    standard deviation over the seeds (the best mean in bold); parameters;
    time per epoch as the median over seeds of each run's median epoch (from
    the per-epoch times of the file), with :obj:`table` ``'seconds'`` in
    seconds and as a ratio to the first model of the run (two decimals), with
    ``'ratios'`` as the ratio alone (one decimal): the models take turns seed
    by seed, so the ratio is robust to the machine's load where the seconds
    are not."""
    if table not in TABLES:
        raise ValueError(f"'table' must be one of {TABLES}, got {table!r}")
    results, args = result['results'], result['args']
    metric = result.get('metric') or next(
        k[len('test_'):] for k in results[0]['history'][0] if k.startswith('test_'))
    kinds = [kind for kind in MODELS if any(r['model'] == kind for r in results)]
    runs = {kind: [r for r in results if r['model'] == kind] for kind in kinds}
    seconds = {kind: upper_median([upper_median([row['seconds'] for row in r['history']])
                                   for r in runs[kind]]) for kind in kinds}
    scores = {kind: {key: mean_std([r[key] for r in runs[kind]]) for key in ('test', 'best_valid')}
              for kind in kinds}
    base = kinds[0]
    name = METRIC_NAMES.get(metric, metric)
    head = [f"model ({args['dataset']})", f'test {name}', f'valid {name}', 'parameters']
    head += [f'time / epoch vs {MODEL_NAMES[base]}'] if table == 'ratios' else \
        ['s / epoch (this run)', f'time / {MODEL_NAMES[base]}']
    best = max if higher_is_better(metric) else min
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for kind in kinds:
        cells = [MODEL_NAMES[kind]]
        for key in ('test', 'best_valid'):
            mean, std = scores[kind][key]
            text = f'{mean:.3f} ± {std:.3f}'
            winner = best(scores[k][key][0] for k in kinds)
            cells.append(f'**{text}**' if len(kinds) > 1 and mean == winner else text)
        cells.append(f"{runs[kind][0]['params']:,}")
        ratio = seconds[kind] / seconds[base]
        cells += [f'{ratio:.1f}x'] if table == 'ratios' else \
            [f'{seconds[kind]:.2f}', f'{ratio:.2f}x']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n\n' + provenance_note(result, path)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', default='ogbg-molfreesolv',
                        help='any ogbg-mol* name; offline: ' + ', '.join(OFFLINE_DATASETS)
                        + ' (default: %(default)s)')
    parser.add_argument('--split', default=None,
                        help="split type (default: the dataset's own, e.g. scaffold)")
    parser.add_argument('--model', nargs='+', default=list(MODELS[:3]), choices=MODELS,
                        help='models to train, taking turns seed by seed; hsa_nopos: the '
                        'HSA model without position vectors (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=30, help='(default: %(default)s)')
    parser.add_argument('--seeds', type=int, default=3,
                        help='seeds 0..N-1 per model; OGB asks for 10 (default: %(default)s)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='(default: CUDA when available, else the CPU)')
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads per process: one is the fastest and steadiest on '
                        'small molecule batches, and on a shared machine two threads can '
                        'run 10x slower than one (default: %(default)s)')
    parser.add_argument('--hidden', type=int, default=64, help='(default: %(default)s)')
    parser.add_argument('--layers', type=int, default=3, help='(default: %(default)s)')
    parser.add_argument('--heads', type=int, default=4, help='(default: %(default)s)')
    parser.add_argument('--dropout', type=float, default=0.2, help='(default: %(default)s)')
    parser.add_argument('--pos-dim', type=int, default=16,
                        help='size of the junction-tree position vectors; 0: the HSA model '
                        'uses none (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=32, help='(default: %(default)s)')
    parser.add_argument('--lr', type=float, default=1e-3, help='(default: %(default)s)')
    parser.add_argument('--weight-decay', type=float, default=0.0,
                        help='(default: %(default)s)')
    parser.add_argument('--limit', type=int, default=None,
                        help='use only the first N molecules of each split (smoke runs)')
    parser.add_argument('--root', default='data', help='dataset folder (default: %(default)s)')
    parser.add_argument('--out', default='results/ogbg_mol',
                        help='folder for results.json, table.md and curves.png '
                        '(default: %(default)s)')
    parser.add_argument('--quiet', action='store_true',
                        help='no progress bars (one line per model and seed still)')
    parser.add_argument('--report', metavar='RESULTS_JSON', default=None,
                        help='print the table of the results.json of an earlier run, with '
                        'its provenance, and exit (no training)')
    parser.add_argument('--table', default='seconds', choices=TABLES,
                        help='the table printed: seconds per epoch and their ratio to the '
                        'first model, or the ratio alone (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report, args.table))
        return result['results']
    ctx = Distributed(args.device)
    torch.set_num_threads(max(1, args.threads))
    try:
        # rank 0 builds and processes the dataset while the other ranks wait at
        # the barrier, then they load its cache (one barrier on every rank)
        if ctx.enabled and not ctx.main:
            dist.barrier()
        dataset = ogb_dataset(args.dataset, args.root,
                              pre_transform=MoleculeHierarchy(pos_dim=max(args.pos_dim, 2)))
        if ctx.enabled and ctx.main:
            dist.barrier()
        split = dataset.get_idx_split(args.split)
        if args.limit is not None:
            split = {k: v[:args.limit] for k, v in split.items()}
        task = OGBTask(dataset, split['train'])
        ogb_evaluator = evaluator(args.dataset)
        metric = ogb_evaluator.eval_metric
        if ctx.main:
            print(f'{args.dataset}: {len(dataset)} molecules, split '
                  f"{args.split or dataset.meta_info['split']} "
                  f"{ {k: len(v) for k, v in split.items()} }, {dataset.task_type}, "
                  f'metric {metric}, {ctx.world_size} process(es) on {ctx.device}, '
                  f'{torch.get_num_threads()} thread(s) each')
        results, path = [], osp.join(args.out, 'results.json')
        result = dict(args=vars(args), world_size=ctx.world_size, metric=metric,
                      molecules=len(dataset), split={k: len(v) for k, v in split.items()},
                      results=results)
        for seed in range(args.seeds):  # seed-major: the models take turns
            for kind in args.model:
                results.append(run(kind, seed, dataset, split, task, args, ctx,
                                   ogb_evaluator))
                r = results[-1]
                if ctx.enabled:  # every rank reports: the metrics must agree
                    # one write per line: print() writes text and newline apart,
                    # and the ranks' lines could interleave on a shared pipe
                    sys.stdout.write(f"[rank {ctx.rank}] {kind} seed {seed}: valid {metric} "
                                     f"{r['best_valid']!r}, test {metric} {r['test']!r}\n")
                    sys.stdout.flush()
                if ctx.main:
                    print(f"{MODEL_NAMES[kind]:>24} seed {seed}: test {metric} "
                          f"{r['test']:.4f} (valid {r['best_valid']:.4f}, epoch "
                          f"{r['best_epoch']}), {r['epoch_time']:.2f} s/epoch", flush=True)
                    save_json(result, path)  # after every run: a stopped run keeps its runs
        if ctx.main:
            result['provenance'] = provenance(ctx.device)
            if ctx.enabled:  # the command as typed: sys.argv holds no torchrun
                result['provenance']['command'] = result['provenance']['command'].replace(
                    'python ', f'torchrun --nproc_per_node={ctx.world_size} ', 1)
            save_json(result, path)
            table = report(result, path, args.table)
            with open(osp.join(args.out, 'table.md'), 'w') as f:
                f.write(table + '\n')
            named = [{**r, 'model': MODEL_NAMES[r['model']]} for r in results]
            plot_curves(named, [], 'model', metric, osp.join(args.out, 'curves.png'),
                        f'{args.dataset} (mean ± std over seeds)',
                        series=('loss', f'valid_{metric}'))
            print(f'\nwrote {path}, table.md, curves.png\n\nbest-validation epoch per seed; '
                  f'test {metric} mean ± std over seeds\n\n{table}')
        return results
    finally:
        ctx.close()


if __name__ == '__main__':
    main()
