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
curves.  The README's table follows OGB's protocol of 10 seeds:

    python examples/ogbg_mol.py --seeds 10 --epochs 50

Data-parallel on N processes (gloo on CPU, nccl on GPU):

    torchrun --nproc_per_node=2 examples/ogbg_mol.py --epochs 1 --seeds 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList, ReLU, Sequential
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINEConv, GPSConv, global_add_pool, global_mean_pool

from hsa_geo.datasets import OFFLINE_DATASETS, evaluator, ogb_dataset
from hsa_geo.experiments import mean_std_text, plot_curves
from hsa_geo.loader import HierarchyLoader
from hsa_geo.nn import HSAGPSConv
from hsa_geo.transforms import MoleculeHierarchy

from _experiment import OGBTask, higher_is_better

MODELS = ('gin', 'gps', 'hsa')
MODEL_NAMES = {'gin': 'GIN-VN', 'gps': 'GPS (dense attention)', 'hsa': 'HSA-GPS (junction tree)'}


# --------------------------------------------------------------------------- models
def _gine(channels: int) -> GINEConv:
    # OGB's GIN: MLP((1 + eps) x_i + sum_j relu(x_j + bond_j)), bonds embedded per layer
    mlp = Sequential(Linear(channels, 2 * channels), BatchNorm1d(2 * channels), ReLU(),
                     Linear(2 * channels, channels))
    return GINEConv(mlp, train_eps=True)


class MolModel(Module):
    r"""Atom encoder -> ``layers`` blocks -> mean pooling -> MLP head.

    ``kind='gin'``: GINE message passing with a virtual node (OGB's GIN-VN);
    ``kind='gps'``: :class:`torch_geometric.nn.GPSConv` (GINE + dense
    multi-head attention over each molecule); ``kind='hsa'``:
    :class:`hsa_geo.nn.HSAGPSConv` (GINE + HSA over the junction tree, with
    the tree's position vectors).
    """
    def __init__(self, kind: str, hidden: int, layers: int, out_channels: int,
                 heads: int = 4, dropout: float = 0.2, pos_dim: int = 16):
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"'kind' must be one of {MODELS}, got {kind!r}")
        self.kind = kind
        self.atom_encoder = AtomEncoder(hidden)
        self.bond_encoders = ModuleList([BondEncoder(hidden) for _ in range(layers)])
        self.dropout = dropout
        if kind == 'gin':
            self.convs = ModuleList([_gine(hidden) for _ in range(layers)])
            self.norms = ModuleList([BatchNorm1d(hidden) for _ in range(layers)])
            self.virtual_node = torch.nn.Embedding(1, hidden)
            torch.nn.init.zeros_(self.virtual_node.weight)
            self.virtual_mlps = ModuleList([
                Sequential(Linear(hidden, 2 * hidden), BatchNorm1d(2 * hidden), ReLU(),
                           Linear(2 * hidden, hidden), BatchNorm1d(hidden), ReLU())
                for _ in range(layers - 1)
            ])
        elif kind == 'gps':
            self.convs = ModuleList([
                GPSConv(hidden, _gine(hidden), heads=heads, dropout=dropout)
                for _ in range(layers)
            ])
        else:
            self.use_pos = pos_dim > 0
            self.convs = ModuleList([
                HSAGPSConv(hidden, _gine(hidden), heads=heads, dropout=dropout,
                           attn_kwargs=dict(pos_channels=pos_dim if self.use_pos else None))
                for _ in range(layers)
            ])
        self.head = Sequential(Linear(hidden, hidden), ReLU(), Linear(hidden, out_channels))

    def forward(self, batch) -> Tensor:
        atom = batch['atom']
        bonds = batch['atom', 'bond', 'atom']
        x = self.atom_encoder(atom.x)
        graph = atom.batch
        if self.kind == 'gin':
            vn = self.virtual_node.weight.expand(batch.num_graphs, -1)
            for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
                x = x + vn[graph]
                h = norm(conv(x, bonds.edge_index, self.bond_encoders[i](bonds.edge_attr)))
                if i < len(self.convs) - 1:
                    h = F.relu(h)
                    vn = vn + F.dropout(self.virtual_mlps[i](global_add_pool(x, graph) + vn),
                                        self.dropout, self.training)
                x = x + F.dropout(h, self.dropout, self.training)
        elif self.kind == 'gps':
            for conv, bond_encoder in zip(self.convs, self.bond_encoders, strict=True):
                x = conv(x, bonds.edge_index, graph,
                         edge_attr=bond_encoder(bonds.edge_attr))
        else:
            hierarchy = batch.hierarchy  # compiled once by the loader, used by every layer
            pos = ({t: batch[t].hsa_pos for t in ('atom', 'cluster', 'molecule')}
                   if self.use_pos else None)
            for conv, bond_encoder in zip(self.convs, self.bond_encoders, strict=True):
                x = conv(x, bonds.edge_index, graph, hierarchy=hierarchy, pos=pos,
                         edge_attr=bond_encoder(bonds.edge_attr))
        return self.head(global_mean_pool(x, graph, size=batch.num_graphs))


def loader_for(kind: str):
    r"""HSA batches carry their compiled hierarchy (``batch.hierarchy``);
    the baselines do not need one."""
    return HierarchyLoader if kind == 'hsa' else DataLoader


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
    model = MolModel(kind, args.hidden, args.layers, task.out_channels, heads=args.heads,
                     dropout=args.dropout, pos_dim=args.pos_dim).to(ctx.device)
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
        loader = loader_for(kind)(train_set, batch_size=args.batch_size, sampler=sampler,
                                  drop_last=drop_last)
    else:
        loader = loader_for(kind)(train_set, batch_size=args.batch_size, shuffle=True,
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
                        f'test_{metric}': test})
        if best is None or (valid > best[0] if better else valid < best[0]):
            best = (valid, test, epoch + 1)  # epochs count from 1, as printed
        progress.set_postfix(loss=f'{loss:.3f}', valid=f'{valid:.3f}')
    progress.close()
    return dict(model=kind, seed=seed, params=num_params, best_valid=best[0],
                test=best[1], best_epoch=best[2],
                epoch_time=sorted(epoch_times)[len(epoch_times) // 2], history=history)


# ------------------------------------------------------------------------ reporting
def results_table(results: List[dict], metric: str, dataset: str) -> str:
    r"""Mean ± std over seeds; time per epoch as the median over seeds of
    each run's median epoch, and as a ratio to the first model of the run
    (the models take turns, so the ratio is robust to the machine's load
    where the seconds are not)."""
    kinds = [kind for kind in MODELS if any(r['model'] == kind for r in results)]
    medians = {}
    for kind in kinds:
        times = sorted(r['epoch_time'] for r in results if r['model'] == kind)
        medians[kind] = times[len(times) // 2]
    base = kinds[0] if kinds else None
    lines = [f'| model ({dataset}) | test {metric} | valid {metric} | parameters '
             f'| s / epoch (this run) | time / {MODEL_NAMES.get(base, base)} | seeds |',
             '|---|---|---|---|---|---|---|']
    for kind in kinds:
        rows = [r for r in results if r['model'] == kind]
        lines.append(f"| {MODEL_NAMES[kind]} | {mean_std_text([r['test'] for r in rows])} | "
                     f"{mean_std_text([r['best_valid'] for r in rows])} | {rows[0]['params']:,} | "
                     f"{medians[kind]:.2f} | {medians[kind] / medians[base]:.2f}x | "
                     f"{len(rows)} |")
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', default='ogbg-molfreesolv',
                        help='any ogbg-mol* name; offline: ' + ', '.join(OFFLINE_DATASETS)
                        + ' (default: %(default)s)')
    parser.add_argument('--split', default=None,
                        help="split type (default: the dataset's own, e.g. scaffold)")
    parser.add_argument('--model', nargs='+', default=list(MODELS), choices=MODELS,
                        help='models to train (default: all)')
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
    return parser.parse_args(argv)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
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
        results = []
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
        if ctx.main:
            table = results_table(results, metric, args.dataset)
            print(f'\nbest-validation epoch per seed; test {metric} mean ± std over seeds\n')
            print(table)
            os.makedirs(args.out, exist_ok=True)
            with open(osp.join(args.out, 'results.json'), 'w') as f:
                json.dump(dict(args=vars(args), world_size=ctx.world_size, results=results),
                          f, indent=1)
            with open(osp.join(args.out, 'table.md'), 'w') as f:
                f.write(table + '\n')
            named = [{**r, 'model': MODEL_NAMES[r['model']]} for r in results]
            plot_curves(named, [], 'model', metric, osp.join(args.out, 'curves.png'),
                        f'{args.dataset} (mean ± std over seeds)',
                        series=('loss', f'valid_{metric}'))
            print(f"\nwrote {osp.join(args.out, 'results.json')}, table.md, curves.png")
        return results
    finally:
        ctx.close()


if __name__ == '__main__':
    main()
