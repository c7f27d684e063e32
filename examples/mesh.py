r"""Mesh classification and part segmentation with
:class:`hsa_geo.nn.HSAMeshTransformer`: the triangles are the tokens (features
``[centroid, unit normal, area]``), grouped by an octree over their centroids
(:class:`hsa_geo.transforms.MeshHierarchy`).

Data: SYNTHETIC meshes (:func:`hsa_geo.datasets.synthetic_shapes`): trimesh
primitives (sphere, box, cylinder, capsule, cone, torus, annulus) under random
stretch, rotation and scale, refined to a face count drawn independently of
the class, 60 per class; each mesh is turned to its principal axes (PyG's
``NormalizeRotation``) since 42 training meshes per class cannot teach
rotation invariance.  Fixed random 70/15/15 split.

* ``classification``: one primitive per mesh, 7 classes, faces pooled by
  area (the surface mean).
* ``parts``: surface soups of 2-3 placed primitives (concatenated, not a
  boolean union); every face is labelled with the primitive it came from
  (7 classes), scored by mean IoU over classes and face accuracy.

Models as in ``examples/point_cloud.py`` (same blocks and head, only the
attention differs): ``hsa`` (octree HSA), ``dense`` (softmax attention over
all faces of a mesh), ``pointnet`` (none); ``hsa+pt`` and ``pt``
(PointTransformerConv on the k=16 nearest face centroids) on request.

The result file, ``<out>/results.json``, holds every run (per seed scores
and curves) and the provenance; ``--report <out>/results.json --table TASK``
prints a task's table again from it alone: test scores as mean +- standard
deviation over the seeds, and the median s/epoch.

Example::

    python examples/mesh.py                                 # both tasks, 2 seeds
    python examples/mesh.py --task parts --epochs 5 --seeds 1 --models hsa dense
    python examples/mesh.py --report results/mesh/results.json --table parts
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import time

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import NormalizeRotation

from hsa_geo.experiments import load_result
from hsa_geo.nn import HSAMeshTransformer
from hsa_geo.transforms import FlatHierarchy, MeshHierarchy
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

TASKS = ('classification', 'parts')


def prepare(mesh: Data, depth: int, k: int):
    r"""The mesh's faces under an octree (with the ``k`` nearest face
    centroids as ``('face', 'to', 'face')`` edges) and under one flat root."""
    keep = Data(pos=mesh.pos, face=mesh.face, y=mesh.y)
    if 'face_part' in mesh:
        keep.face_part = mesh.face_part
    # 42 training meshes per class cannot teach rotation invariance: every
    # model sees each mesh turned to its principal axes
    keep = NormalizeRotation(sort=True)(keep)
    tree = MeshHierarchy(depth)(keep)
    del tree['vertex'], tree['vertex', 'of', 'face']  # not part of the model's input
    tree['face', 'to', 'face'].edge_index = knn_graph(tree['face'].pos, k)
    return tree, FlatHierarchy(pos_dim=2)(tree)


def draw_mesh_clusters(path: str, name: str = 'airplane', depth: int = 2) -> str:
    r"""A shipped real mesh (pyvista's airplane) with every triangle coloured
    by its octree cluster :obj:`depth` levels below the root of
    :class:`~hsa_geo.transforms.MeshHierarchy`: the face groups whose
    statistics HSA's sibling scores compare."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from hsa_geo import Hierarchy
    from hsa_geo.datasets import read_mesh
    from hsa_geo.viz import leaf_clusters
    mesh = read_mesh(name)
    tree = MeshHierarchy(depth=4)(mesh)
    h = Hierarchy.from_hetero(tree)
    label, nodes = leaf_clusters(h, depth)
    triangles = mesh.pos[mesh.face.t()].numpy()
    colours = plt.get_cmap('tab20')((label % 20).numpy())
    fig = plt.figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot(projection='3d')
    ax.add_collection3d(Poly3DCollection(triangles, facecolors=colours, edgecolors='none'))
    low, high = mesh.pos.min(0).values.numpy(), mesh.pos.max(0).values.numpy()
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_zlim(low[2], high[2])
    ax.set_box_aspect(high - low)
    ax.view_init(elev=35, azim=-60)
    ax.set_axis_off()
    ax.set_title(f'{name} ({mesh.face.size(1):,} faces): {nodes.numel()} octree face '
                 f'clusters at depth {depth}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return path


def report(result: dict, path: str, task: str = None) -> str:
    r"""The table of one task of a result file (the only one it holds where
    :obj:`task` is :obj:`None`) and the line saying where it comes from.

    Raises:
        ValueError: If the file does not hold that task, or holds both and
            none is named.
    """
    from _geometry_report import geometry_table, with_note
    held = [t for t in TASKS if any(r['task'] == t for r in result['runs'])]
    if task is None and len(held) == 1:
        task = held[0]
    if task not in held:
        raise ValueError(f'{path} holds the tasks {held}: name one with --table'
                         if task is None else f'{path} holds no {task!r} runs ({held})')
    if task == 'classification':
        scores, name = {'test accuracy': 'accuracy', 'test mIoU': None}, 'primitives'
    else:
        scores, name = {'test face accuracy': 'accuracy', 'test mIoU': 'miou'}, \
            'primitive types'
    table = geometry_table([r for r in result['runs'] if r['task'] == task], 'task', scores,
                           ('s/epoch', ), label=lambda t: f"{t} ({result['classes']} {name})")
    return with_note(table, result, path)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Mesh classification and part segmentation on synthetic meshes: HSA mesh '
                    'transformer vs PointTransformerConv, dense attention and PointNet.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--task', nargs='+', default=list(TASKS), choices=TASKS)
    parser.add_argument('--models', nargs='+', default=['hsa', 'dense', 'pointnet'],
                        choices=list(GEOMETRY_MODELS),
                        help='pt and hsa+pt are available but ~10x slower per epoch on '
                             'meshes of ~500 faces')
    add_training_arguments(parser, seeds=2, epochs=12, batch_size=16, lr=2e-3)
    parser.add_argument('--per-class', type=int, default=60, help='meshes per class')
    parser.add_argument('--faces', type=int, nargs=2, default=[384, 640],
                        help='range of the face count of a single primitive')
    parser.add_argument('--depth', type=int, default=3, help='octree depth')
    parser.add_argument('--k', type=int, default=16, help='neighbours of the local blocks')
    parser.add_argument('--out', default='results/mesh', help='output folder')
    parser.add_argument('--figure', default=None,
                        help="PNG of the airplane coloured by octree face cluster; 'none' "
                        "to skip (default: <out>/airplane_clusters.png)")
    parser.add_argument('--report', metavar='RESULTS_JSON',
                        help='measure nothing: print a table of the results.json of an '
                             'earlier run')
    parser.add_argument('--table', choices=TASKS, default=None,
                        help='with --report: which task (needed where the file holds both)')
    args = parser.parse_args(argv)
    if args.report:
        result = load_result(args.report)
        try:
            print(report(result, args.report, args.table))
        except ValueError as error:
            parser.error(str(error))
        return result['runs']
    os.makedirs(args.out, exist_ok=True)
    if args.figure is None:
        args.figure = osp.join(args.out, 'airplane_clusters.png')
    if args.figure != 'none':
        print(draw_mesh_clusters(args.figure))
    from hsa_geo.datasets import SYNTHETIC_SHAPES, synthetic_shapes
    classes = len(SYNTHETIC_SHAPES)
    results: list = []
    path = osp.join(args.out, 'results.json')
    for task_name in args.task:
        start = time.perf_counter()
        meshes = synthetic_shapes(args.per_class, seed=0, num_points=16,
                                  union=task_name == 'parts', num_faces=tuple(args.faces))
        pairs = [prepare(m, args.depth, args.k) for m in meshes]
        data = geometry_loaders([p[0] for p in pairs], [p[1] for p in pairs], split(len(meshes)),
                       args.batch_size, args.device)
        faces = torch.tensor([m.face.size(1) for m in meshes]).float()
        print(f'{task_name}: {len(meshes)} meshes, {faces.min():.0f}-{faces.max():.0f} faces '
              f'(mean {faces.mean():.0f}), prepared in {time.perf_counter() - start:.1f} s')
        if task_name == 'classification':
            task = Task('classification', classes)
        else:
            task = Task('segmentation', classes, target=lambda batch: batch['face'].face_part)

        def make_model(model_name, task_name=task_name):
            return HSAMeshTransformer(
                classes, args.channels, num_layers=args.layers, heads=args.heads,
                **geometry_blocks(model_name, args.channels),
                task='classification' if task_name == 'classification' else 'segmentation')
        run_geometry_models(args, make_model, data, task, 'face', {'task': task_name},
                            results, path, extra=lambda batch: {'area': batch['face'].area},
                            facts={'classes': classes})
        # the full table (seeds, parameters, memory) and the curves beside the result file
        geometry_report([r for r in results if r['task'] == task_name], ['task', 'model'],
                        list(task.metrics), args.device, f'Synthetic meshes: {task_name}',
                        args.out, f'mesh_{task_name}')
    from _geometry_report import save_result
    result = save_result(args, results, path, classes=classes)
    print('\n' + '\n\n'.join(report(result, path, task_name) for task_name in args.task))
    return results


if __name__ == '__main__':
    main()
