r"""Pooling leaf features over the subtrees of a hierarchy."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from hsa_geo.hierarchy import Hierarchy

__all__ = ['subtree_pool', 'root_pool', 'leaf_type_pool', 'leaf_tree', 'depth_pool',
           'type_pool']


def subtree_pool(x: Tensor, hierarchy: Hierarchy, nodes: Tensor,
                 reduce: str = 'mean') -> Tensor:
    r"""For each node of :obj:`nodes`, the sum or mean of the features of the
    leaves below it: ``[len(nodes), channels]``.

    Works without host synchronisation (it walks every leaf up the tree
    ``depth`` times), so it can run inside a compiled model.

    Args:
        x (Tensor): Leaf features ``[num_leaves, channels]``.
        hierarchy (Hierarchy): The hierarchy.
        nodes (LongTensor): Node indices (may be nested in each other).
        reduce (str, optional): ``'mean'`` or ``'sum'``. (default: ``'mean'``)
    """
    if reduce not in ('mean', 'sum'):
        raise ValueError(f"'reduce' must be 'mean' or 'sum', got {reduce!r}")
    _check_rows(x, hierarchy)
    hierarchy.refuse_pooling(nodes)
    parent = hierarchy.parent.to(x.device)
    nodes = nodes.to(x.device)
    slot_of = torch.full((hierarchy.num_nodes + 1, ), -1, dtype=torch.long,
                         device=x.device)
    slot_of[nodes] = torch.arange(nodes.numel(), device=x.device)
    parent = torch.cat([parent.clamp(min=-1), parent.new_full((1, ), -1)])
    parent = torch.where(parent < 0, hierarchy.num_nodes, parent)  # -1 -> sink
    out = x.new_zeros(nodes.numel() + 1, *x.shape[1:])
    count = x.new_zeros(nodes.numel() + 1)
    node = torch.arange(hierarchy.num_leaves, device=x.device)
    for _ in range(hierarchy.depth + 1):
        slot = slot_of[node]
        slot = torch.where(slot < 0, nodes.numel(), slot)            # misses -> sink
        out.index_add_(0, slot, x)
        count.index_add_(0, slot, torch.ones_like(count[:1]).expand(slot.numel()))
        node = parent[node]
    out, count = out[:-1], count[:-1]
    if reduce == 'mean':
        out = out / count.clamp(min=1).view(-1, *([1] * (x.dim() - 1)))
    return out


def root_pool(x: Tensor, hierarchy: Hierarchy, reduce: str = 'mean') -> Tensor:
    r"""One vector per tree of the forest (roots in node order), e.g. per graph
    of a batch: the ``'mean'``, ``'sum'`` or (elementwise) ``'max'`` of its
    leaves."""
    if reduce not in ('mean', 'sum', 'max'):
        raise ValueError(f"'reduce' must be 'mean', 'sum' or 'max', got {reduce!r}")
    _check_rows(x, hierarchy)
    hierarchy.refuse_pooling()
    # sizes from tensor shapes, not Python ints: symbolic under torch.compile
    return scatter(x, hierarchy.leaf_tree, dim=0, dim_size=hierarchy.roots.size(0),
                   reduce=reduce)


def leaf_type_pool(x, hierarchy: Hierarchy) -> Tensor:
    r"""One vector per tree: the mean over the leaf types the tree has of the
    mean of its leaves of that type,

    .. math::
        \mathbf{h}_T = \frac{1}{|\mathcal{T}_T|} \sum_{t \in \mathcal{T}_T}
        \frac{1}{|T_t|} \sum_{i \in T_t} \mathbf{x}_i,

    so that every modality of a multi-modal sample weighs the same however
    many leaves it has.  :obj:`x` is a dictionary over leaf types or the
    leaves of all types in the hierarchy's leaf order; with a single leaf
    type this is :func:`root_pool`."""
    hierarchy.refuse_pooling()
    if isinstance(x, dict):
        sizes = [x[t].size(0) for t in hierarchy.leaf_types]
        x = torch.cat([x[t] for t in hierarchy.leaf_types])
    else:
        sizes = [end - start for start, end in
                 (hierarchy.node_slices[t] for t in hierarchy.leaf_types)] or [x.size(0)]
    _check_rows(x, hierarchy)
    num_trees, num_types = hierarchy.roots.size(0), len(sizes)
    # one bucket per (tree, leaf type); sizes from tensor shapes stay symbolic
    # under torch.compile
    leaf_type = torch.cat([torch.full((n, ), i, dtype=torch.long, device=x.device)
                           for i, n in enumerate(sizes)])
    bucket = hierarchy.leaf_tree * num_types + leaf_type
    means = scatter(x, bucket, dim=0, dim_size=num_trees * num_types, reduce='mean')
    count = scatter(torch.ones_like(bucket, dtype=x.dtype), bucket, dim=0,
                    dim_size=num_trees * num_types, reduce='sum')
    means = means.view(num_trees, num_types, *x.shape[1:]).sum(1)
    present = (count.view(num_trees, num_types) > 0).to(x.dtype).sum(1)
    return means / present.clamp(min=1).view(-1, *([1] * (x.dim() - 1)))


def leaf_tree(hierarchy: Hierarchy) -> Tensor:
    r"""For every leaf, the index of its tree among the roots in node order
    (for a batch from PyG's DataLoader: the sample's index, like ``batch``);
    kept by the hierarchy since it was compiled (:attr:`Hierarchy.leaf_tree`)."""
    hierarchy.refuse_pooling()
    return hierarchy.leaf_tree


def depth_pool(x: Tensor, hierarchy: Hierarchy, depth: int,
               reduce: str = 'mean') -> Tensor:
    r"""One vector per node at distance :obj:`depth` from its root, in node
    order, with the indices of those nodes."""
    parent = hierarchy.parent
    dist = torch.zeros_like(parent)
    node = torch.arange(parent.numel(), device=parent.device)
    for _ in range(hierarchy.depth):
        up = parent[node.clamp(min=0)]
        alive = (node >= 0) & (up >= 0)
        dist = dist + alive.long()
        node = torch.where(alive, up, -1)
    nodes = (dist == depth).nonzero().view(-1)
    return subtree_pool(x, hierarchy, nodes, reduce), nodes


def type_pool(x: Tensor, hierarchy: Hierarchy, node_type: str,
              reduce: str = 'mean') -> Tensor:
    r"""One vector per node of a node type of a hierarchy built with
    :meth:`Hierarchy.from_hetero`."""
    if node_type not in hierarchy.node_slices:
        raise ValueError(f"'node_type' {node_type!r} is not in the hierarchy; it has "
                         f"{sorted(hierarchy.node_slices)}")
    start, end = hierarchy.node_slices[node_type]
    nodes = torch.arange(start, end, device=hierarchy.parent.device)
    return subtree_pool(x, hierarchy, nodes, reduce)


def _check_rows(x: Tensor, hierarchy: Hierarchy) -> None:
    # under torch.compile a comparison with the hierarchy's Python ints would
    # specialise the graph to this batch's size
    if not torch.compiler.is_compiling() and x.size(0) != hierarchy.num_leaves:
        raise ValueError(f"'x' has {x.size(0)} rows but the hierarchy has "
                         f"{hierarchy.num_leaves} leaves")
