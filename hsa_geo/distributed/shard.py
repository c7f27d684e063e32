r"""One hierarchy spread over the ranks of a process group: its top-level
subtrees (the children of the root) split into contiguous runs of about equal
leaf counts, one run per rank."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import as_int
from hsa_geo.hierarchy import Hierarchy

__all__ = ['ShardedHierarchy', 'shard_forest', 'shard_hierarchy', 'communicated_bytes']


class ShardedHierarchy:
    r"""This rank's part of one hierarchy whose top-level subtrees are spread
    over the ranks of a :mod:`torch.distributed` process group: the root and
    this rank's subtrees below it (e.g. from :func:`shard_hierarchy`).

    Pass it where a :class:`~hsa_geo.Hierarchy` goes in attention
    (:func:`hsa_geo.hsa`, :class:`~hsa_geo.nn.HSAConv`,
    :class:`~hsa_geo.nn.HSAGPSConv`, :class:`~hsa_geo.nn.HSAGraphTransformer`,
    ...): the layers run on this rank's leaves only, and their attention is
    global and exact, equal to single-process HSA over the whole tree
    (:func:`distributed_hsa`; every layer all-gathers the top-level nodes'
    statistics, not the leaves).  Wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, a model then trains
    data-sharded with its attention global (exact with per-node layers; a
    ``BatchNorm`` sees its rank's nodes only unless converted with
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, and local message
    passing sees the edges inside the rank's share).  Sizes, node types and
    the device are this rank's tree's.  Pooling over the root and attention
    weights refuse it (they would cover this rank's subtrees only).  Eager
    mode only; the attention takes no per-pair ``bias`` and no dropout.

    Args:
        hierarchy (Hierarchy): This rank's tree: one root, whose children are
            this rank's top-level subtrees, in the global order (rank after
            rank, node order within a rank).
        group (ProcessGroup, optional): The process group; :obj:`None`: the
            default one (or this process alone when none is initialised).
    """
    __slots__ = ('hierarchy', 'subtrees', 'keep', 'group')

    def __init__(self, hierarchy: Hierarchy, group=None):
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"'hierarchy' must be a compiled Hierarchy (this rank's tree), "
                            f"got {type(hierarchy).__name__}")
        if hierarchy.num_roots != 1 or int(hierarchy.roots[0]) < hierarchy.num_leaves:
            raise ValueError(f"'hierarchy' must be one tree whose root has this rank's "
                             f"top-level subtrees as children, got {hierarchy.num_roots} "
                             f"roots" + (" (the root is a leaf)" if hierarchy.num_roots == 1
                                         else ''))
        parent = hierarchy.parent.cpu()
        root = int(hierarchy.roots[0])
        keep = torch.arange(parent.numel()) != root
        new_index = torch.cumsum(keep.long(), 0) - 1
        below = parent[keep]
        local_parent = torch.where((below >= 0) & (below != root),
                                   new_index[below.clamp(min=0)], -1)
        self.hierarchy = hierarchy
        #: This rank's subtrees as a forest (the root removed).
        self.subtrees = Hierarchy.from_parent(local_parent.to(hierarchy.parent.device),
                                              hierarchy.num_leaves)
        #: The nodes of :attr:`hierarchy` other than the root, ``[num_nodes - 1]``.
        self.keep = keep.nonzero().view(-1).to(hierarchy.parent.device)
        self.group = group

    def attention(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
                  include_self: bool = False, causal: bool = False,
                  scale: Optional[float] = None) -> Tensor:
        r""":func:`distributed_hsa` over this rank's subtrees, :obj:`pos` given
        for every node of :attr:`hierarchy` (the top-level nodes' rows are
        their positions in the root's family)."""
        from hsa_geo.distributed.attention import distributed_hsa
        sub_pos = top_pos = None
        if pos is not None:
            sub_pos = pos.index_select(0, self.keep)
            top_pos = sub_pos.index_select(0, self.subtrees.roots)
        return distributed_hsa(q, k, v, self.subtrees, pos=sub_pos, top_pos=top_pos,
                               include_self=include_self, causal=causal, scale=scale,
                               group=self.group)

    def to(self, device, non_blocking: bool = False) -> 'ShardedHierarchy':
        r"""A copy on :obj:`device` that is still sharded (the signature PyG's
        ``batch.to`` calls)."""
        out = object.__new__(ShardedHierarchy)
        out.hierarchy = self.hierarchy.to(device, non_blocking)
        out.subtrees = self.subtrees.to(device, non_blocking)
        out.keep = self.keep.to(device, non_blocking=non_blocking)
        out.group = self.group
        return out

    def cpu(self) -> 'ShardedHierarchy':
        return self.to('cpu')

    def cuda(self, device=None) -> 'ShardedHierarchy':
        return self.to('cuda' if device is None else torch.device('cuda', device))

    def __getattr__(self, name):  # sizes, node types, device: this rank's tree's
        if name in ShardedHierarchy.__slots__ or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self.hierarchy, name)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.hierarchy!r})'


def _balanced_runs(sizes: Tensor, num_shards: int) -> List[Tuple[int, int]]:
    r"""Contiguous runs ``(first, last)`` of the items with these sizes, one
    per shard, each non-empty, with about equal sums."""
    total, count = int(sizes.sum()), sizes.numel()
    starts = torch.cumsum(sizes, 0) - sizes
    bounds = [0]
    for i in range(1, num_shards):
        cut = int(torch.searchsorted(starts, torch.tensor(i * total / num_shards,
                                                          dtype=starts.dtype)))
        bounds.append(min(max(cut, bounds[-1] + 1), count - (num_shards - i)))
    bounds.append(count)
    return list(zip(bounds[:-1], bounds[1:]))


def shard_hierarchy(data, rank: int, world_size: int, group=None, relation: str = 'in'):
    r"""This rank's share of a hierarchy stored as ``HeteroData`` (the output
    of a builder such as :class:`~hsa_geo.transforms.GraphHierarchy`): the
    root's children (top-level subtrees) are split into :obj:`world_size`
    contiguous runs of about equal leaf counts, and rank :obj:`rank` gets
    its run with all the leaves and clusters below it, pruned by
    :func:`~hsa_geo.utils.hierarchy_subgraph` (attributes sliced, ``n_id``
    the original node indices, the graph's edges between kept nodes kept:
    edges to other ranks' nodes are cut, as between Cluster-GCN's clusters).

    Returns ``(part, hierarchy)``: the rank's ``HeteroData`` and its
    :class:`ShardedHierarchy` for the layers.

    Args:
        data (HeteroData): The hierarchy, one tree.
        rank (int): This process's rank in :obj:`group`.
        world_size (int): The number of ranks.
        group (ProcessGroup, optional): Handed to :class:`ShardedHierarchy`.
        relation (str, optional): The relation of child-to-parent edges.
            (default: :obj:`'in'`)
    """
    from hsa_geo.loader.subtree_loader import top_subtrees
    from hsa_geo.hierarchy import hierarchy_node_types
    from hsa_geo.utils.subgraph import hierarchy_subgraph
    world_size = as_int(world_size, 'world_size', minimum=1)
    rank = as_int(rank, 'rank', minimum=0, maximum=world_size - 1)
    leaf_types, cluster_types = hierarchy_node_types(data.edge_types, data.node_types,
                                                     relation)
    top = top_subtrees(data, relation)
    num_subtrees = max((int(t.max()) + 1 for t in top.values() if t.numel()), default=0)
    if num_subtrees < world_size:
        raise ValueError(f"'data' has {num_subtrees} top-level subtrees, fewer than "
                         f"'world_size' ({world_size}): every rank needs at least one")
    # the subtrees in the order of their top-level nodes in the compiled tree
    # (leaf types first, then cluster types: Hierarchy.from_hetero's order), so
    # that the runs of the ranks follow the order causal attention uses
    offset, start = {}, 0
    for t in leaf_types + cluster_types:
        offset[t], start = start, start + int(data[t].num_nodes)
    has_parent = {child for child, rel, _ in data.edge_types if rel == relation}
    node_of_subtree = torch.empty(num_subtrees, dtype=torch.long)
    for child, rel, parent in data.edge_types:
        if rel == relation and parent not in has_parent:          # the root's children
            child_index = data[child, rel, parent].edge_index[0]
            node_of_subtree[top[child][child_index]] = offset[child] + child_index
    position = torch.empty(num_subtrees, dtype=torch.long)
    position[torch.argsort(node_of_subtree)] = torch.arange(num_subtrees)
    sizes = torch.zeros(num_subtrees, dtype=torch.long)
    for t in leaf_types:
        mine = position[top[t][top[t] >= 0]]
        sizes += torch.bincount(mine, minlength=num_subtrees)
    first, last = _balanced_runs(sizes, world_size)[rank]
    leaves = {}
    for t in leaf_types:
        at = position[top[t].clamp(min=0)]
        leaves[t] = (top[t] >= 0) & (at >= first) & (at < last)
    part = hierarchy_subgraph(data, leaves, relation)
    return part, ShardedHierarchy(Hierarchy.from_hetero(part, relation=relation), group)


def shard_forest(hierarchy: Hierarchy, num_shards: int) -> List[tuple]:
    r"""Splits a forest of top-level subtrees (its roots are the children of
    the global root) into :obj:`num_shards` contiguous runs of roots with
    about equal leaf counts, for :func:`distributed_hsa`.

    Returns one ``(local, leaf_ids, node_ids)`` per shard: the shard's forest
    (leaves first, every order kept), and the indices of its leaves and of
    all its nodes in :obj:`hierarchy` (``pos[node_ids]`` are its positions,
    ``q[leaf_ids]`` its queries)."""
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"'num_shards' must be a positive int, got {num_shards!r}")
    if num_shards > hierarchy.roots.numel():
        raise ValueError(f"'num_shards' ({num_shards}) exceeds the number of top-level "
                         f"subtrees ({hierarchy.roots.numel()})")
    parent = hierarchy.parent.cpu()
    num_leaves, num_nodes = hierarchy.num_leaves, parent.numel()
    tree_of_leaf = hierarchy.leaf_tree.cpu()
    sizes = torch.bincount(tree_of_leaf, minlength=hierarchy.roots.numel())
    # tree of every node: walk up to the root
    node_root = torch.arange(num_nodes)
    for _ in range(hierarchy.depth + 1):
        up = parent[node_root]
        node_root = torch.where(up >= 0, up, node_root)
    root_rank = torch.full((num_nodes, ), -1, dtype=torch.long)
    root_rank[hierarchy.roots.cpu()] = torch.arange(hierarchy.roots.numel())
    node_tree = root_rank[node_root]
    shards = []
    for first, last in _balanced_runs(sizes, num_shards):
        mine = (node_tree >= first) & (node_tree < last)
        leaf_ids = mine[:num_leaves].nonzero().view(-1)
        node_ids = torch.cat([leaf_ids, num_leaves + mine[num_leaves:].nonzero().view(-1)])
        local = torch.full((num_nodes, ), -1, dtype=torch.long)
        local[node_ids] = torch.arange(node_ids.numel())
        local_parent = torch.where(parent[node_ids] >= 0, local[parent[node_ids].clamp(min=0)],
                                   -1)
        shards.append((Hierarchy.from_parent(local_parent.to(hierarchy.parent.device),
                                             leaf_ids.numel()), leaf_ids, node_ids))
    return shards


def communicated_bytes(num_top_nodes: int, heads: int, dim: int, dim_v: int,
                       pos_dim: int = 0, element_size: int = 4) -> int:
    r"""Bytes each rank receives in one forward pass of :func:`distributed_hsa`:
    every top-level node's key and value means, leaf count and position, per
    head (the backward pass sends the same amount back)."""
    return num_top_nodes * heads * (dim + dim_v + 1 + pos_dim) * element_size
