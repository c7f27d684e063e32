r"""Node property prediction on one large graph: HSA against the graph
transformers PyG users reach for at scale, same budget.

HSA (Amizadeh et al., NeurIPS 2025) attends over a hierarchy of the graph's
nodes: nested communities found by :class:`hsa_geo.transforms.GraphHierarchy`
(``--hierarchy plm``: Louvain levels by networkit; ``metis``: nested k-way
METIS cuts), built once before training.  Models (one hidden size, layers,
learning rate and number of epochs for all):

* ``hsa``: :class:`hsa_geo.nn.HSAGraphTransformer` (GPS layers with a
  GraphSAGE local layer and HSA over all nodes), full-batch;
* ``hsa_subtrees``: the same model on mini-batches of top-level subtrees
  (:class:`hsa_geo.loader.SubtreeLoader`, Cluster-GCN along the hierarchy),
  for training and inference alike: every node is scored in a batch of
  subtrees, so its attention is limited to a batch as in training (the
  groups are fixed at inference, drawn anew every training epoch);
* ``sgformer``: PyG's ``SGFormer`` (linear global attention + GCN);
* ``polynormer``: PyG's ``Polynormer`` (one head; local-only for the first
  quarter of the epochs, then global, as its authors train it);
* ``gps_performer``: PyG's ``GPSConv`` with a GraphSAGE local layer and
  Performer attention;
* ``graphsage``: PyG's ``GraphSAGE``, no attention.

Data (``--dataset``):

* ``planted`` (default, offline): a **SYNTHETIC** graph of 10^5 nodes with
  planted nested communities (:func:`hsa_geo.datasets.planted_node_dataset`):
  classes drawn per community, features a weak class signal plus noise.  Not
  a real benchmark: it measures cost and whether each model uses community
  context, nothing more.
* ``ogbn-arxiv`` / ``ogbn-products``: OGB's ``PygNodePropPredDataset`` and
  ``Evaluator`` with OGB's split, read from ``--root``; nothing is downloaded
  unless ``--download`` is given (then OGB fetches it, where a network
  exists).

Test accuracy at the best-validation epoch, mean and 95% interval over the
seeds; median seconds per training epoch; peak memory of training (CPU:
the activation memory of one step).  Models take turns seed by seed, so their
times share the machine's load.

The result file (``--out``/results.json) holds every seed's scores and
every epoch's time; ``--report`` prints its table again (no training)::

    python examples/ogbn_node.py --report results/ogbn_node/results.json

Example::

    python examples/ogbn_node.py                              # planted, 3 seeds
    python examples/ogbn_node.py --num-nodes 10000 --epochs 5 --seeds 1
    python examples/ogbn_node.py --dataset ogbn-arxiv --root data/ogb --download
"""
from __future__ import annotations

import argparse
import copy
import os.path as osp
import statistics
import time
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.experiments import (
    load_result,
    measurement_note,
    provenance,
    provenance_note,
    save_json,
    summarise,
)
from hsa_geo.loader import SubtreeLoader
from hsa_geo.nn import HSAGraphTransformer
from hsa_geo.testing import PeakMemory

from _ogbn import (
    add_common_arguments,
    bold_best,
    build_hierarchy,
    epoch_seconds,
    load_graph,
    mean_interval_text,
    write_report,
)

MODELS = ('hsa', 'hsa_subtrees', 'sgformer', 'polynormer', 'gps_performer', 'graphsage')
NAMES = {'hsa': 'HSA (full batch)', 'hsa_subtrees': 'HSA (subtree mini-batches)',
         'sgformer': 'SGFormer', 'polynormer': 'Polynormer',
         'gps_performer': 'GPS + Performer', 'graphsage': 'GraphSAGE'}


# ----------------------------------------------------------------------- models
def make_model(kind: str, in_channels: int, num_classes: int, args) -> torch.nn.Module:
    from torch_geometric.nn.models import GraphSAGE, Polynormer, SGFormer
    hidden, layers, heads, dropout = args.hidden, args.layers, args.heads, args.dropout
    if kind in ('hsa', 'hsa_subtrees'):
        return HSAGraphTransformer(in_channels, hidden, num_classes, num_layers=layers,
                                   heads=heads, pos_channels=args.pos_dim, dropout=dropout)
    if kind == 'sgformer':
        return SGFormer(in_channels, hidden, num_classes, trans_num_layers=1,
                        trans_num_heads=heads, trans_dropout=dropout, gnn_num_layers=layers,
                        gnn_dropout=dropout)
    if kind == 'polynormer':
        # one head: with more, PyG 2.8's Polynormer feeds its global attention
        # heads x hidden features where it expects hidden (a shape error)
        return Polynormer(in_channels, hidden, num_classes, local_layers=layers,
                          global_layers=1, heads=1, in_dropout=dropout, dropout=dropout,
                          global_dropout=dropout)
    if kind == 'gps_performer':
        return GPSPerformer(in_channels, hidden, num_classes, layers, heads, dropout)
    return GraphSAGE(in_channels, hidden, layers, num_classes, dropout=dropout)


class GPSPerformer(torch.nn.Module):
    r"""Linear -> ``layers`` x PyG ``GPSConv`` (GraphSAGE local layer,
    Performer attention) -> Linear."""
    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int,
                 heads: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GPSConv, SAGEConv
        self.lin_in = torch.nn.Linear(in_channels, hidden)
        self.layers = torch.nn.ModuleList([
            GPSConv(hidden, SAGEConv(hidden, hidden), heads=heads, dropout=dropout,
                    attn_type='performer') for _ in range(layers)])
        self.lin_out = torch.nn.Linear(hidden, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = self.lin_in(x)
        for layer in self.layers:
            h = layer(h, edge_index)
        return self.lin_out(h)


def run_model(kind: str, model, data: Data, tree, hierarchy: Hierarchy) -> Tensor:
    r"""The model's logits for every node of the full graph."""
    edge_index = data.edge_index
    if kind == 'hsa':
        return model(data.x, edge_index, hierarchy, tree.hsa_pos_dict)
    if kind in ('sgformer', 'polynormer'):
        return model(data.x, edge_index, torch.zeros(data.num_nodes, dtype=torch.long,
                                                     device=data.x.device))
    return model(data.x, edge_index)


def predict_by_subtrees(model, loader: SubtreeLoader, num_nodes: int) -> Tensor:
    r"""Logits of every node from fixed batches of subtrees: inference sees
    attention limited to a batch, as training does (the root's family holds
    a batch's subtrees only)."""
    logits = None
    device = next(model.parameters()).device
    for batch in SubtreeLoader(loader.data, batch_size=loader.batch_size):
        batch = batch.to(device)
        nodes = batch['node']
        out = model(nodes.x, batch['node', 'to', 'node'].edge_index, batch.hierarchy,
                    batch.hsa_pos_dict)
        if logits is None:
            logits = out.new_zeros(num_nodes, out.size(1))
        logits[nodes.n_id] = out
    return logits


# ---------------------------------------------------------------------- training
def accuracy(logits: Tensor, y: Tensor, mask: Tensor, evaluator) -> float:
    pred = logits[mask].argmax(-1)
    if evaluator is not None:
        return float(evaluator.eval({'y_true': y[mask].view(-1, 1),
                                     'y_pred': pred.view(-1, 1)})['acc'])
    return float((pred == y[mask]).float().mean())


def train(kind: str, seed: int, data: Data, tree, hierarchy: Hierarchy, loader, args,
          evaluator, num_classes: int, progress) -> dict:
    torch.manual_seed(seed)
    model = make_model(kind, data.num_features, num_classes, args).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay)
    warmup = args.epochs // 4 if kind == 'polynormer' else 0
    history, best, times, peak = [], None, [], 0
    for epoch in range(1, args.epochs + 1):
        if kind == 'polynormer':
            model._global = epoch > warmup     # PyG's switch to the global attention
        model.train()
        total = 0.0
        with PeakMemory(torch.device(args.device).type) as memory:
            start = time.perf_counter()
            batches = loader if kind == 'hsa_subtrees' else [None]
            for batch in batches:
                optimizer.zero_grad()
                if batch is None:
                    out = run_model(kind, model, data, tree, hierarchy)
                    loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
                else:
                    batch = batch.to(args.device)
                    nodes = batch['node']
                    out = model(nodes.x, batch['node', 'to', 'node'].edge_index,
                                batch.hierarchy, batch.hsa_pos_dict)
                    if not bool(nodes.train_mask.any()):
                        continue
                    loss = F.cross_entropy(out[nodes.train_mask], nodes.y[nodes.train_mask])
                loss.backward()
                optimizer.step()
                memory.step()
                total += loss.item()
            times.append(time.perf_counter() - start)
        peak = max(peak, memory.peak)
        model.eval()
        with torch.no_grad():
            logits = predict_by_subtrees(model, loader, data.num_nodes) \
                if kind == 'hsa_subtrees' else run_model(kind, model, data, tree, hierarchy)
        row = {'epoch': epoch, 'loss': total / max(len(loader) if kind == 'hsa_subtrees'
                                                   else 1, 1),
               'valid_accuracy': accuracy(logits, data.y, data.val_mask, evaluator),
               'test_accuracy': accuracy(logits, data.y, data.test_mask, evaluator),
               'seconds': times[-1]}
        history.append(row)
        # Polynormer's local warm-up epochs are not candidates, as in its recipe
        if epoch > warmup and (best is None or row['valid_accuracy'] > best['valid_accuracy']):
            best = copy.copy(row)
        progress.set_postfix(epoch=epoch, valid=f"{row['valid_accuracy']:.3f}")
    times.sort()
    return {'model': kind, 'seed': seed, 'history': history, 'best_epoch': best['epoch'],
            'valid_accuracy': best['valid_accuracy'], 'test_accuracy': best['test_accuracy'],
            'params': sum(p.numel() for p in model.parameters()),
            'seconds_per_epoch': statistics.median(times), 'peak_mib': peak / 2**20}


# -------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Node property prediction on one large graph: HSA (full batch and '
        'subtree mini-batches) against SGFormer, Polynormer, GPS + Performer and GraphSAGE.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
    parser.add_argument('--subtrees-per-batch', type=int, default=4,
                        help='top-level subtrees per mini-batch of hsa_subtrees')
    parser.add_argument('--control', action='store_true',
                        help='planted graph only: every node draws its own class, so the '
                        'labels do not follow the communities (a control of what the '
                        "hierarchy's prior contributes)")
    parser.add_argument('--graph-per-seed', action='store_true',
                        help='planted graph only: draw the graph, classes, features and '
                        'split from each seed (else seed 0 for all)')
    parser.add_argument('--out', default='results/ogbn_node',
                        help='folder for results.json, results.md and curves.png')
    parser.add_argument('--report', metavar='RESULTS_JSON', default=None,
                        help='print the table of the results.json of an earlier run, '
                        'with its provenance, and exit (no training)')
    args = parser.parse_args(argv)
    if args.dataset != 'planted' and (args.control or args.graph_per_seed):
        parser.error('--control and --graph-per-seed apply to --dataset planted only')
    return args


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report))
        return result['runs']
    from tqdm import tqdm
    torch.set_num_threads(args.threads)
    data = load_graph(args, 0, not args.control)
    num_classes = int(data.y.max()) + 1
    evaluator = None
    if args.dataset != 'planted':
        from ogb.nodeproppred import Evaluator
        evaluator = Evaluator(args.dataset)
    def prepare(data):
        tree, hierarchy, builder, build_s, compile_s = build_hierarchy(data, args)
        # the subtree loader cuts the CPU copy; the full-batch models run where --device says
        loader = SubtreeLoader(tree, batch_size=args.subtrees_per_batch, shuffle=True) \
            if 'hsa_subtrees' in args.models else None
        data, tree, hierarchy = (data.to(args.device), tree.to(args.device),
                                 hierarchy.to(args.device))
        print(f'{args.dataset}{" (SYNTHETIC)" if args.dataset == "planted" else ""}: '
              f'{data.num_nodes:,} nodes, {data.edge_index.size(1) // 2:,} edges, '
              f'{num_classes} classes; {builder} in {build_s:.1f} s, compiled in '
              f'{compile_s:.1f} s: {hierarchy}')
        return data, tree, hierarchy, loader, build_s

    data, tree, hierarchy, loader, build_s = prepare(data)
    results, path = [], osp.join(args.out, 'results.json')
    runs = [(seed, kind) for seed in range(args.seeds) for kind in args.models]
    progress = tqdm(runs, disable=args.quiet)
    for seed, kind in progress:
        if args.graph_per_seed and seed > 0 and kind == args.models[0]:
            data, tree, hierarchy, loader, build_s = prepare(
                load_graph(args, seed, not args.control))
        progress.set_description(f'{kind} seed {seed}')
        results.append(train(kind, seed, data, tree, hierarchy, loader, args, evaluator,
                             num_classes, progress))
        results[-1]['hierarchy_seconds'] = build_s  # the seed's own with --graph-per-seed
        save_json({'args': vars(args), 'hierarchy_seconds': build_s, 'runs': results}, path)
    # the provenance at the end of the run: the load and threads it ended with
    result = {'args': vars(args), 'hierarchy_seconds': build_s, 'runs': results,
              'provenance': provenance(args.device)}
    save_json(result, path)
    label = f'{args.dataset} (SYNTHETIC, {args.num_nodes:,} nodes' \
        f"{', labels per node (control)' if args.control else ''}" \
        f"{', a graph per seed' if args.graph_per_seed else ''})" \
        if args.dataset == 'planted' else args.dataset
    text = (f'{label}: test accuracy at the best-validation epoch, mean ± 95% interval '
            f'over seeds; {measurement_note(args.device)}; hierarchy built '
            f"{'once per seed' if args.graph_per_seed else 'once'}, the last in "
            f'{build_s:.1f} s (not in s/epoch).\n\n' + report(result, path))
    write_report(text, [dict(r, name=NAMES[r['model']]) for r in results], args.out, label)
    return results


def report(result: dict, path: str) -> str:
    r"""The table of a result file, with the line of its provenance: per
    model, the test accuracy at the best-validation epoch (mean ± 95%
    interval over the seeds), the parameters, the median over seeds of each
    run's median epoch time, and the largest peak memory of training (on the
    CPU the activation memory of one step); the best value of a column in
    bold."""
    runs = [dict(r, name=NAMES[r['model']], seconds_per_epoch=epoch_seconds(r))
            for r in result['runs']]
    rows = summarise(runs, ['name'], ['accuracy'])
    cpu = torch.device(result['args'].get('device', 'cpu')).type == 'cpu'
    cells = [[r['name'], mean_interval_text(*r['accuracy'], r['seeds']), f"{r['params']:,}",
              f"{r['seconds_per_epoch']:.2f}", f"{r['peak_mib']:.0f}"] for r in rows]
    bold_best(cells, 1, [r['accuracy'][0] for r in rows])
    bold_best(cells, 3, [r['seconds_per_epoch'] for r in rows], min)
    bold_best(cells, 4, [r['peak_mib'] for r in rows], min)
    lines = [f"| model | test accuracy | params | s/epoch | "
             f"{'activation' if cpu else 'peak'} MiB |", '|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in cells]
    return '\n'.join(lines) + '\n\n' + provenance_note(result, path)


if __name__ == '__main__':
    main()
