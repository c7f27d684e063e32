r"""One hierarchy spread over the ranks of a process group: its top-level
subtrees (the children of the root) split into contiguous runs of about equal
leaf counts, one run per rank."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import as_int
from hsa_geo.distributed.attention import _distributed_hsa
from hsa_geo.distributed.share import Share, as_share, digest, share_of
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike

__all__ = ['ShardedHierarchy', 'Share', 'share_of', 'shard_forest', 'shard_hierarchy',
           'communicated_bytes']


class ShardedHierarchy(HierarchyLike):
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
    One from :func:`shard_hierarchy` records its :class:`Share`, which the
    attention checks across the ranks (see :func:`distributed_hsa`).

    Args:
        hierarchy (Hierarchy): This rank's tree: one root, whose children are
            this rank's top-level subtrees, in the global order (rank after
            rank, node order within a rank).
        group (ProcessGroup, optional): The process group; :obj:`None`: the
            default one (or this process alone when none is initialised).
        share (Share, optional): What this share is, for a tree rebuilt from
            a saved part of :func:`shard_hierarchy` (``part.hsa_share``), so
            that the ranks check it as they check a fresh one.
            (default: :obj:`None`)
    """
    __slots__ = ('hierarchy', 'subtrees', 'keep', 'group', '_share')

    def __init__(self, hierarchy: Hierarchy, group=None, share: Optional[Share] = None):
        if share is not None:
            share = as_share(share)
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
        self._share: Optional[Share] = None
        self._record(share)

    def _record(self, share: Optional[Share]) -> 'ShardedHierarchy':
        self._share = share
        if share is not None:       # read by distributed_hsa from the subtrees
            self.subtrees._hsa_share = share
        return self

    def attention(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
                  include_self: bool = False, causal: bool = False,
                  scale: Optional[float] = None, bias: Optional[Tensor] = None,
                  dropout: float = 0.0) -> Tensor:
        r""":func:`distributed_hsa` over this rank's subtrees, :obj:`pos` given
        for every node of :attr:`hierarchy` (the top-level nodes' rows are
        their positions in the root's family).  A :obj:`bias` or a
        :obj:`dropout` is refused.  Every fault of this rank's input is
        raised after the ranks have compared their calls, so that the other
        ranks raise too instead of waiting for this one."""
        sub_pos = top_pos = error = None
        if bias is not None or not (isinstance(dropout, (int, float)) and dropout == 0):
            error = ValueError(f"a ShardedHierarchy's attention takes no 'bias' and no "
                               f"'dropout' (got bias={'a tensor' if bias is not None else None}"
                               f", dropout={dropout!r})")
        elif pos is not None:
            if not isinstance(pos, Tensor) or pos.dim() not in (2, 3) or \
                    pos.size(0) != self.hierarchy.num_nodes:
                error = ValueError(f"'pos' must be [{self.hierarchy.num_nodes}, c] or "
                                   f"[{self.hierarchy.num_nodes}, heads, c] (one row per "
                                   f"node of this rank's tree), got "
                                   f"{list(pos.shape) if isinstance(pos, Tensor) else pos}")
            else:
                sub_pos = pos.index_select(0, self.keep)
                top_pos = sub_pos.index_select(0, self.subtrees.roots)
        return _distributed_hsa(q, k, v, self.subtrees, sub_pos, top_pos, include_self,
                                causal, scale, self.group, error)

    # ------------------------------------------------------ HierarchyLike
    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, include_self: bool = False,
               causal: bool = False, scale: Optional[float] = None,
               dropout: float = 0.0) -> Tensor:
        r""":meth:`attention` with the arguments of :func:`hsa_geo.hsa`: this
        rank's inputs are checked once the ranks have compared their calls, so
        that a fault on one rank raises on all of them."""
        return self.attention(q, k, v, pos, include_self, causal, scale, bias=bias,
                              dropout=dropout)

    def pair_hierarchy(self, num_leaves: int, device: torch.device):
        raise ValueError("attention weights of a ShardedHierarchy would cover this rank's "
                         "subtrees only; compute them on the whole tree")

    def sibling_pairs(self, num_leaves: int, device: torch.device) -> Tensor:
        return torch.empty(2, 0, dtype=torch.long, device=device)  # no pairs to explain

    def refuse_pooling(self, nodes: Optional[Tensor] = None) -> None:
        r"""Pooling a whole tree (or the root) would pool this rank's subtrees
        only: refused.  Nodes below the root are exact, their subtrees whole."""
        if nodes is None:
            what = 'a tree'
        elif bool((nodes.to(self.roots.device) == self.roots[0]).any()):
            what = 'the root'
        else:
            return
        raise TypeError(f"pooling {what} over a ShardedHierarchy would pool this rank's "
                        f"subtrees only: pool each rank's share and reduce across the ranks "
                        f"(pooling nodes below the root is exact, their subtrees are whole)")

    def to(self, device, non_blocking: bool = False) -> 'ShardedHierarchy':
        r"""A copy on :obj:`device` that is still sharded (the signature PyG's
        ``batch.to`` calls)."""
        out = object.__new__(ShardedHierarchy)
        out.hierarchy = self.hierarchy.to(device, non_blocking)
        out.subtrees = self.subtrees.to(device, non_blocking)
        out.keep = self.keep.to(device, non_blocking=non_blocking)
        out.group = self.group
        return out._record(self._share)

    def cpu(self) -> 'ShardedHierarchy':
        return self.to('cpu')

    def cuda(self, device=None) -> 'ShardedHierarchy':
        r"""A copy on a CUDA device: :obj:`device` as in :meth:`Hierarchy.cuda`
        (a device, a device string or an index; :obj:`None`: the current one)."""
        return self.to(self.hierarchy.cuda(device).device)

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
    :class:`ShardedHierarchy` for the layers, which records its
    :class:`Share` (rank, world size, a digest of :obj:`data`'s hierarchy):
    the attention checks across the ranks that every rank runs its own share
    of the same hierarchy.

    Args:
        data (HeteroData): The hierarchy, one tree (a forest is refused: its
            trees would be attended to as one).
        rank (int): This process's rank in :obj:`group`.
        world_size (int): The number of ranks.
        group (ProcessGroup, optional): Handed to :class:`ShardedHierarchy`.
        relation (str, optional): The relation of child-to-parent edges.
            (default: :obj:`'in'`)
    """
    from torch_geometric.data import HeteroData

    from hsa_geo.loader.subtree_loader import _compile, _top_level
    from hsa_geo.utils.subgraph import hierarchy_subgraph
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a hierarchy HeteroData (e.g. the output of "
                        f"GraphHierarchy), got {type(data).__name__}")
    world_size = as_int(world_size, 'world_size', minimum=1)
    rank = as_int(rank, 'rank', minimum=0, maximum=world_size - 1)
    whole = _compile(data, relation)
    if whole.num_roots != 1:
        raise ValueError(f"'data' has {whole.num_roots} roots (a forest of "
                         f"{whole.num_roots} trees), but shard_hierarchy shards one tree: "
                         f"its top-level subtrees, spread over the ranks, all attend to "
                         f"each other as one family; shard each tree on its own, or put "
                         f"the roots under one new root")
    # the subtrees are numbered in the order of their top-level nodes in the
    # compiled tree, so the runs of the ranks follow the order causal
    # attention uses
    top, num_subtrees = _top_level(whole)
    if num_subtrees < world_size:
        raise ValueError(f"'data' has {num_subtrees} top-level subtrees, fewer than "
                         f"'world_size' ({world_size}): every rank needs at least one")
    top_of_leaf = top[:whole.num_leaves]
    sizes = torch.bincount(top_of_leaf[top_of_leaf >= 0], minlength=num_subtrees)
    first, last = _balanced_runs(sizes, world_size)[rank]
    leaves = {}
    for t in whole.leaf_types:
        start, end = whole.node_slices[t]
        leaves[t] = (top[start:end] >= first) & (top[start:end] < last)
    part = hierarchy_subgraph(data, leaves, relation)
    share = Share(rank, world_size, digest(whole.parent, whole.num_leaves,
                                            sorted(whole.node_slices.items())))
    part.hsa_share = share  # travels with a saved part (ShardedHierarchy(share=...))
    sharded = ShardedHierarchy(Hierarchy.from_hetero(part, relation=relation), group)
    if sharded.subtrees.num_roots != last - first:
        # the part lost the root above its subtrees: its top-level nodes
        # would be taken for others (never silently)
        raise RuntimeError(f"shard_hierarchy: rank {rank}'s part of 'data' has "
                           f"{sharded.subtrees.num_roots} top-level subtrees below its root "
                           f"instead of {last - first}: hierarchy_subgraph did not keep every "
                           f"ancestor of the kept leaves")
    return part, sharded._record(share)


def shard_forest(hierarchy: Hierarchy, num_shards: int) -> List[tuple]:
    r"""Splits a forest of top-level subtrees (its roots are the children of
    the global root) into :obj:`num_shards` contiguous runs of roots with
    about equal leaf counts, for :func:`distributed_hsa`.

    Returns one ``(local, leaf_ids, node_ids)`` per shard: the shard's forest
    (leaves first, every order kept), and the indices of its leaves and of
    all its nodes in :obj:`hierarchy` (``pos[node_ids]`` are its positions,
    ``q[leaf_ids]`` its queries).  Each ``local`` records its :class:`Share`
    (its index, :obj:`num_shards`, a digest of :obj:`hierarchy`), which
    :func:`distributed_hsa` checks across the ranks: rank ``r`` of a group of
    :obj:`num_shards` ranks passes share ``r``."""
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy (the forest of top-level "
                        f"subtrees), got {type(hierarchy).__name__}")
    num_shards = as_int(num_shards, 'num_shards', minimum=1)
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
    whole = digest(parent, num_leaves)
    shards = []
    for index, (first, last) in enumerate(_balanced_runs(sizes, num_shards)):
        mine = (node_tree >= first) & (node_tree < last)
        leaf_ids = mine[:num_leaves].nonzero().view(-1)
        node_ids = torch.cat([leaf_ids, num_leaves + mine[num_leaves:].nonzero().view(-1)])
        new_index = torch.full((num_nodes, ), -1, dtype=torch.long)
        new_index[node_ids] = torch.arange(node_ids.numel())
        local_parent = torch.where(parent[node_ids] >= 0,
                                   new_index[parent[node_ids].clamp(min=0)], -1)
        local = Hierarchy.from_parent(local_parent.to(hierarchy.parent.device),
                                      leaf_ids.numel())
        local._hsa_share = Share(index, num_shards, whole)
        shards.append((local, leaf_ids, node_ids))
    return shards


def communicated_bytes(num_top_nodes: int, heads: int, dim: int, dim_v: int,
                       pos_dim: int = 0, element_size: int = 4) -> int:
    r"""Bytes each rank receives in one forward pass of :func:`distributed_hsa`:
    every top-level node's key and value means, leaf count and position, per
    head (the backward pass sends the same amount back)."""
    return num_top_nodes * heads * (dim + dim_v + 1 + pos_dim) * element_size
