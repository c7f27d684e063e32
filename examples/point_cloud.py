r"""Point-cloud classification with :class:`hsa_geo.nn.HSAPointTransformer`
against the layers a PyG user would pick instead, under the same budget.

Data (both offline):

* ``digits``: scikit-learn's handwritten digits, 1,797 real 8x8 images as 2D
  point clouds (one point per non-black pixel, 16-42 points, intensity as the
  feature; :func:`hsa_geo.datasets.digits_point_clouds`), 10 classes,
  quadtree of depth 2.
* ``shapes``: a SYNTHETIC 3D set, trimesh primitives (sphere, box, cylinder,
  capsule, cone, torus, annulus) under random stretch, rotation and scale,
  100 per class, 128 noisy surface points each, no features besides the coordinates
  (:func:`hsa_geo.datasets.synthetic_shapes`), 7 classes, octree of depth 3;
  each cloud is turned to its principal axes (PyG's ``NormalizeRotation``),
  since 70 training shapes per class cannot teach rotation invariance.

Models (the same embedding, width, depth, FFN blocks, head and pooling; only
the attention differs; :class:`hsa_geo.nn.HSAPointTransformer`):

* ``hsa``: HSA over the octree/quadtree with relative-centroid positions;
* ``hsa+pt``: the same, each block preceded by PyG's PointTransformerConv on
  the k-nearest-neighbour graph;
* ``pt``: PointTransformerConv blocks alone (a Point Transformer network);
* ``dense``: softmax attention over all points of a cloud (the points under
  one flat root: exactly multi-head attention, diagonal excluded);
* ``pointnet``: no attention, per-point MLP blocks and pooling.

Random 70/15/15 split (fixed), test accuracy at the best-validation epoch,
mean +- standard deviation over seeds, s/epoch and peak memory (the
activation memory saved for backward in one training step).  The result
file, ``<out>/results.json``, holds every run (per seed scores and curves)
and the provenance; ``--report <out>/results.json`` prints the table again
from it alone.

Example::

    python examples/point_cloud.py                             # both sets, 3 seeds
    python examples/point_cloud.py --dataset digits --epochs 10 --seeds 2
    python examples/point_cloud.py --figures-only              # the two PNGs only
    python examples/point_cloud.py --report results/point_cloud/results.json
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import time
from typing import List

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import NormalizeRotation

from hsa_geo.experiments import load_result
from hsa_geo.nn import HSAPointTransformer
from hsa_geo.transforms import FlatHierarchy, VoxelHierarchy
from hsa_geo.utils import knn_graph

from _experiment import (
    GEOMETRY_MODELS,
    Task,
    add_training_arguments,
    geometry_blocks,
    geometry_loaders,
    geometry_report,
    run_geometry_models,
    split,
)

# name: (spatial dim, feature size, classes, tree depth, k of the kNN graph, lr)
DATASETS = {'digits': (2, 1, 10, 2, 8, 1e-3), 'shapes': (3, 0, 7, 3, 16, 2e-3)}


# ------------------------------------------------------------------------ data
def load_clouds(dataset: str, per_class: int = 100, num_points: int = 128) -> List[Data]:
    r"""The clouds of :obj:`dataset` with coordinates in [-1, 1]."""
    from hsa_geo.datasets import digits_point_clouds, synthetic_shapes
    if dataset == 'digits':
        return [Data(pos=(d.pos - 3.5) / 3.5, x=d.x, y=d.y) for d in digits_point_clouds()]
    # 70 training shapes per class cannot teach rotation invariance: every
    # model sees each cloud turned to its principal axes (PyG's NormalizeRotation)
    rotate = NormalizeRotation(sort=True)
    return [rotate(Data(pos=d.points, y=d.y))
            for d in synthetic_shapes(per_class, seed=0, num_points=num_points)]


def prepare(data: Data, depth: int, k: int, leaf: str = 'point'):
    r"""The sample as a tree (octree/quadtree over ``pos``, kNN graph as
    ``(leaf, 'to', leaf)`` edges) and as the same leaves under one flat root."""
    data = data.clone()
    data.edge_index = knn_graph(data.pos, k)
    tree = VoxelHierarchy(depth, leaf_type=leaf)(data)
    return tree, FlatHierarchy(pos_dim=2)(tree)


# --------------------------------------------------------------------- figures
def draw_figures(out_dir: str, seed: int = 0) -> List[str]:
    r"""Two pictures of HSA on the Stanford bunny (pygsp's 2,503 points): the
    points coloured by their octree voxel two levels below the root, and the
    attention of one query point over the cloud (an untrained HSA layer whose
    queries and keys are the coordinates: the map shows the hierarchy's block
    structure, constant within each sibling voxel, decaying with distance in
    the tree)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hsa_geo import Hierarchy
    from hsa_geo.datasets import read_bunny
    from hsa_geo.viz import draw_clusters
    from hsa_geo.weights import hsa_weights
    pos = read_bunny().pos
    pos = (pos - pos.mean(0)) / (pos - pos.mean(0)).norm(dim=-1).max()
    tree = VoxelHierarchy(depth=4)(Data(pos=pos))
    h = Hierarchy.from_hetero(tree)
    os.makedirs(out_dir, exist_ok=True)
    clusters = osp.join(out_dir, 'bunny_octree.png')
    fig = plt.figure(figsize=(10, 4.6))
    for i, depth in enumerate((1, 2)):
        ax = fig.add_subplot(1, 2, i + 1, projection='3d')
        draw_clusters(pos[:, [0, 2, 1]], h, depth=depth, ax=ax)
        ax.view_init(elev=15, azim=-60)
    fig.suptitle('Stanford bunny (2,503 points), octree voxels at two depths')
    fig.savefig(clusters, dpi=110, bbox_inches='tight')
    plt.close(fig)

    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(3, 16, generator=gen)
    q = k = (pos @ proj).view(-1, 1, 16) * 2.0
    node_pos = torch.zeros(h.num_nodes, 3)
    for node_type, vectors in tree.hsa_pos_dict.items():
        start, end = h.node_slices[node_type]
        node_pos[start:end] = vectors
    weights = hsa_weights(q, k, h, pos=node_pos.view(-1, 1, 3))
    query = int(pos[:, 1].argmax())                      # the tip of an ear
    row = weights.row(query)[0]
    attention = osp.join(out_dir, 'bunny_attention.png')
    fig = plt.figure(figsize=(5.4, 4.8))
    ax = fig.add_subplot(projection='3d')
    p = pos[:, [0, 2, 1]].numpy()
    shown = ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=row.clamp(min=1e-9).log10().numpy(),
                       cmap='viridis', s=4)
    ax.scatter(*p[query], c='red', s=60, marker='*')
    ax.view_init(elev=15, azim=-60)
    fig.colorbar(shown, ax=ax, shrink=0.6, label='log10 attention weight')
    ax.set_title('HSA attention of one query (red star)\nover the bunny\'s octree')
    fig.savefig(attention, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return [clusters, attention]


# ------------------------------------------------------------------------ report
def report(result: dict, path: str) -> str:
    r"""The table of a result file (test accuracy, mean +- standard deviation
    over the seeds; parameters, median s/epoch, peak MiB) and the line saying
    where it comes from."""
    from _geometry_report import geometry_table, with_note
    table = geometry_table(result['runs'], 'dataset', {'test accuracy': 'accuracy'},
                           ('params', 's/epoch', 'peak MiB'))
    return with_note(table, result, path)


# ------------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Point-cloud classification: HSA point transformer vs PointTransformerConv, '
                    'dense attention and PointNet, same budget.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dataset', nargs='+', default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument('--models', nargs='+', default=list(GEOMETRY_MODELS),
                        choices=list(GEOMETRY_MODELS))
    add_training_arguments(parser, seeds=3, epochs=15, batch_size=32, lr=None,
                           lr_help='learning rate; unset: 1e-3 for digits, 2e-3 for shapes')
    parser.add_argument('--pool', default='max', choices=['max', 'mean'])
    parser.add_argument('--per-class', type=int, default=100,
                        help='shapes per class of the synthetic 3D set')
    parser.add_argument('--points', type=int, default=128,
                        help='points per synthetic shape')
    parser.add_argument('--limit', type=int, default=None,
                        help='use a fixed random subset of this many clouds (smoke runs)')
    parser.add_argument('--out', default='results/point_cloud', help='output folder')
    parser.add_argument('--figures', default=None,
                        help='folder of the bunny PNGs (default: the --out folder)')
    parser.add_argument('--figures-only', action='store_true',
                        help='draw the bunny PNGs and exit')
    parser.add_argument('--report', metavar='RESULTS_JSON',
                        help='measure nothing: print the table of the results.json of an '
                             'earlier run')
    args = parser.parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report))
        return result['runs']
    os.makedirs(args.out, exist_ok=True)
    if args.figures is None:
        args.figures = args.out
    if args.figures_only:
        print('\n'.join(draw_figures(args.figures)))
        return []
    results: list = []
    given_lr = args.lr
    path = osp.join(args.out, 'results.json')
    for dataset in args.dataset:
        dim, features, classes, depth, k, lr = DATASETS[dataset]
        args.lr = given_lr or lr
        start = time.perf_counter()
        clouds = load_clouds(dataset, args.per_class, args.points)
        if args.limit is not None and args.limit < len(clouds):
            keep = torch.randperm(len(clouds), generator=torch.Generator().manual_seed(0))
            clouds = [clouds[i] for i in keep[:args.limit].sort().values.tolist()]
        pairs = [prepare(c, depth, k) for c in clouds]
        trees, flats = [p[0] for p in pairs], [p[1] for p in pairs]
        data = geometry_loaders(trees, flats, split(len(clouds)), args.batch_size, args.device)
        sizes = torch.tensor([c.pos.size(0) for c in clouds]).float()
        print(f'{dataset}: {len(clouds)} clouds, {sizes.min():.0f}-{sizes.max():.0f} points '
              f'(mean {sizes.mean():.1f}), prepared in {time.perf_counter() - start:.1f} s')

        def make_model(model_name, features=features, classes=classes, dim=dim):
            return HSAPointTransformer(features, args.channels, classes, args.layers,
                                       args.heads, dim=dim, pool=args.pool,
                                       **geometry_blocks(model_name, args.channels, dim))
        run_geometry_models(args, make_model, data, Task('classification', classes), 'point',
                            {'dataset': dataset}, results, path)
    args.lr = given_lr
    # the full table (macro-F1, seeds) and the curves beside the result file
    geometry_report(results, ['dataset', 'model'], ['accuracy', 'macro_f1'], args.device,
                    'Point-cloud classification', args.out, 'point_cloud')
    from _geometry_report import save_result
    print('\n' + report(save_result(args, results, path), path))
    if args.figures:
        print('\n'.join(draw_figures(args.figures)))
    return results


if __name__ == '__main__':
    main()
