r"""What the node-classification examples (``ogbn_node.py`` and
``ogbn_node_ddp.py``) share: the graph, its hierarchy, their common options,
the written report and what their ``--report`` tables read from a result
file.

Both scripts import this module as ``from _ogbn import ...``: run as
``python examples/<script>.py`` or under ``torchrun``, a script has its own
folder on the path."""
from __future__ import annotations

import os
import os.path as osp
import statistics
import time
from typing import Callable, List, Sequence

import torch
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.experiments import plot_curves
from hsa_geo.transforms import GraphHierarchy

DATASETS = ('planted', 'ogbn-arxiv', 'ogbn-products')


def load_graph(args, seed: int = 0, community_labels: bool = True) -> Data:
    r"""The graph with ``x``, ``y`` ``[N]``, ``edge_index`` (undirected) and
    train / val / test masks; the planted graph is drawn from :obj:`seed`,
    with classes per community or, as a control, per node."""
    if args.dataset == 'planted':
        from hsa_geo.datasets import planted_node_dataset
        data = planted_node_dataset(args.num_nodes, seed=seed,
                                    community_labels=community_labels)
        del data.planted
        return data
    from torch_geometric.utils import to_undirected
    folder = osp.join(args.root, args.dataset.replace('-', '_'))
    if not osp.isdir(folder) and not args.download:
        raise SystemExit(
            f'{args.dataset} is not in {folder!r}: copy OGB\'s folder there, or pass '
            f'--download to let OGB fetch it (a network is needed); the default --dataset '
            f'planted needs no download.')
    try:
        from ogb.nodeproppred import PygNodePropPredDataset
        dataset = PygNodePropPredDataset(args.dataset, root=args.root)
    except Exception as error:  # noqa: BLE001  (OGB's download: URLError, EOFError, ...)
        raise SystemExit(f'OGB could not load or fetch {args.dataset} into {args.root!r} '
                         f'({type(error).__name__}: {error})') from None
    data = dataset[0]
    split = dataset.get_idx_split()
    masks = {}
    for name, key in (('train_mask', 'train'), ('val_mask', 'valid'), ('test_mask', 'test')):
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[split[key]] = True
        masks[name] = mask
    return Data(x=data.x.float(), y=data.y.view(-1),
                edge_index=to_undirected(data.edge_index, num_nodes=data.num_nodes), **masks)


def build_hierarchy(data: Data, args):
    r"""The graph's hierarchy by ``--hierarchy``: ``(tree, hierarchy, builder,
    build seconds, compile seconds)``, the tree as the builder's
    ``HeteroData`` and compiled."""
    if args.hierarchy == 'plm':
        builder = GraphHierarchy(method='plm', num_levels=args.levels, pos_dim=args.pos_dim)
    else:
        builder = GraphHierarchy(method='metis', num_parts=tuple(args.num_parts),
                                 pos_dim=args.pos_dim)
    start = time.perf_counter()
    tree = builder(data)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    hierarchy = Hierarchy.from_hetero(tree)
    return tree, hierarchy, builder, seconds, time.perf_counter() - start


def add_common_arguments(parser) -> None:
    r"""The data, hierarchy, model and training options of both scripts."""
    parser.add_argument('--dataset', default='planted', choices=DATASETS)
    parser.add_argument('--num-nodes', type=int, default=100_000,
                        help='nodes of the SYNTHETIC planted graph')
    parser.add_argument('--root', default='data/ogb', help="OGB's dataset folder")
    parser.add_argument('--download', action='store_true',
                        help='let OGB download an ogbn dataset missing from --root')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--epochs', type=int, default=50)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--layers', type=int, default=2)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--dropout', type=float, default=0.2)
    parser.add_argument('--lr', type=float, default=1e-2)
    parser.add_argument('--weight-decay', type=float, default=1e-4)
    parser.add_argument('--hierarchy', default='plm', choices=('plm', 'metis'),
                        help='communities: Louvain levels (networkit) or nested METIS cuts')
    parser.add_argument('--levels', type=int, default=3, help='community levels (plm)')
    parser.add_argument('--num-parts', type=int, nargs='+', default=[16, 16, 16],
                        help='parts per cluster, top-down (metis)')
    parser.add_argument('--pos-dim', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per process (on a shared 2-core machine 1 is '
                        'fastest)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='where models, graph and hierarchy live')


# ----------------------------------------------------------- result-file tables
def upper_median(values: Sequence[float]) -> float:
    r"""The middle value, the upper one of an even count (what
    :func:`hsa_geo.experiments.summarise` takes over seeds)."""
    return statistics.median(values)


def epoch_seconds(run: dict, median: Callable = upper_median) -> float:
    r"""A run's seconds per training epoch: the :obj:`median` of its raw
    per-epoch times (``'seconds'`` in every row of its ``'history'``); a file
    written before the times were kept gives the ``'seconds_per_epoch'`` it
    recorded (the same median of the same times)."""
    history = run.get('history') or []
    if history and all('seconds' in row for row in history):
        return median([row['seconds'] for row in history])
    return run['seconds_per_epoch']


def mean_interval_text(mean: float, half: float, seeds: int) -> str:
    r"""``'mean ± half'`` with three decimals; one seed has no interval."""
    return f'{mean:.3f} ± {half:.3f}' if seeds > 1 else f'{mean:.3f} (one seed)'


def bold_best(cells: List[List[str]], column: int, values: Sequence[float],
              best: Callable = max) -> None:
    r"""Sets the cell of the best of :obj:`values` (one per row; the first on
    a tie) in :obj:`column` in bold, when there are rows to compare."""
    if len(values) > 1:
        row = list(values).index(best(values))
        cells[row][column] = f'**{cells[row][column]}**'


def write_report(text: str, results: List[dict], out: str, label: str) -> None:
    r"""Writes the table to ``results.md``, draws the validation curves of the
    runs (one line per ``name``) to ``curves.png`` and prints the table last."""
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(text + '\n')
    path = plot_curves(results, [], 'name', 'accuracy', osp.join(out, 'curves.png'),
                       f'{label}: validation accuracy', series=('valid_accuracy', 'loss'))
    if path:
        print(f'learning curves: {path}')
    print('\n' + text)
