r"""Pictures of hierarchies (matplotlib, written to PNG)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from hsa_geo.hierarchy import Hierarchy

__all__ = ['draw_tree', 'draw_clusters', 'leaf_clusters']


def _children(parent: List[int]) -> List[List[int]]:
    out: List[List[int]] = [[] for _ in parent]
    for node, p in enumerate(parent):
        if p >= 0:
            out[p].append(node)
    return out


def draw_tree(hierarchy: Hierarchy, path: Optional[str] = None, ax=None,
              max_nodes: int = 2000):
    r"""Draws the forest as a tree (roots on top, leaves at the bottom in
    depth-first order, each internal node above the middle of its children),
    coloured by node type when the hierarchy came from
    :meth:`Hierarchy.from_hetero`.  Writes a PNG to :obj:`path` when given and
    returns the matplotlib axes."""
    import matplotlib
    if path is not None and ax is None:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if hierarchy.num_nodes > max_nodes:
        raise ValueError(f"the hierarchy has {hierarchy.num_nodes} nodes; draw_tree "
                         f"draws at most 'max_nodes'={max_nodes}")
    parent = hierarchy.parent.cpu().tolist()
    children = _children(parent)
    x: Dict[int, float] = {}
    depth: Dict[int, int] = {}
    counter = [0]

    def place(node: int, d: int):
        depth[node] = d
        if not children[node]:
            x[node] = counter[0]
            counter[0] += 1
            return
        for c in children[node]:
            place(c, d + 1)
        x[node] = sum(x[c] for c in children[node]) / len(children[node])

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * hierarchy.num_nodes + 100))
    try:
        for root in (n for n, p in enumerate(parent) if p < 0):
            place(root, 0)
    finally:
        sys.setrecursionlimit(limit)
    kind = ['leaf' if n < hierarchy.num_leaves else 'cluster' for n in range(len(parent))]
    for name, (start, end) in hierarchy.node_slices.items():
        for n in range(start, end):
            kind[n] = name
    names = list(dict.fromkeys(kind))
    colours = plt.get_cmap('tab10')
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(16, 2 + 0.25 * counter[0]), 4))
    for node, p in enumerate(parent):
        if p >= 0:
            ax.plot([x[node], x[p]], [-depth[node], -depth[p]], color='0.7', lw=0.8,
                    zorder=1)
    for i, name in enumerate(names):
        nodes = [n for n in range(len(parent)) if kind[n] == name]
        ax.scatter([x[n] for n in nodes], [-depth[n] for n in nodes], s=18,
                   color=colours(i % 10), label=name, zorder=2)
    ax.set_axis_off()
    ax.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(repr(hierarchy), fontsize=9)
    if path is not None:
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches='tight')
    return ax


def leaf_clusters(hierarchy: Hierarchy, depth: int = 1):
    r"""For every leaf, the index of its ancestor at distance :obj:`depth`
    from the root among all such nodes (a leaf above that depth is its own
    cluster), with those nodes' indices: ``(label [num_leaves], nodes)``."""
    from hsa_geo.nn.pool import depth_pool
    _, nodes = depth_pool(torch.zeros(hierarchy.num_leaves, 1), hierarchy, depth)
    label = torch.full((hierarchy.num_leaves, ), -1, dtype=torch.long)
    parent = hierarchy.parent.cpu()
    slot = torch.full((hierarchy.num_nodes, ), -1, dtype=torch.long)
    slot[nodes.cpu()] = torch.arange(nodes.numel())
    node = torch.arange(hierarchy.num_leaves)
    for _ in range(hierarchy.depth + 1):
        found = (label < 0) & (node >= 0)
        hit = torch.where(found, slot[node.clamp(min=0)], -1)
        label = torch.where(hit >= 0, hit, label)
        node = torch.where(node >= 0, parent[node.clamp(min=0)], -1)
    return label, nodes


def draw_clusters(pos: Tensor, hierarchy: Hierarchy, depth: int = 1,
                  path: Optional[str] = None, ax=None):
    r"""Scatter plot of the leaves at positions :obj:`pos` (2D, or 3D shown
    in 3D) coloured by their ancestor at distance :obj:`depth` from the root,
    e.g. the octree voxels of a point cloud or the face clusters of a mesh
    (pass the face centroids).  Writes a PNG to :obj:`path` when given."""
    import matplotlib
    if path is not None and ax is None:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if pos.size(0) != hierarchy.num_leaves or pos.size(1) not in (2, 3):
        raise ValueError(f"'pos' must have shape [num_leaves={hierarchy.num_leaves}, "
                         f"2 or 3], got {list(pos.shape)}")
    label, nodes = leaf_clusters(hierarchy, depth)
    pos = pos.detach().cpu().float()
    fig = None
    if ax is None:
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(projection='3d' if pos.size(1) == 3 else None)
    coords = [pos[:, i].numpy() for i in range(pos.size(1))]
    ax.scatter(*coords, c=(label % 20).numpy(), cmap='tab20', s=4)
    ax.set_title(f'{nodes.numel()} clusters at depth {depth}')
    if path is not None:
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches='tight')
    return ax
