r"""The compiled hierarchy: a forest laid out for the HSA dynamic program.

A :class:`Hierarchy` is to :func:`hsa_geo.hsa` what PyG's ``EdgeIndex`` is to
message passing: it is built and validated once per batch, holds every
integer the engine needs as Python ints (so the forward pass never syncs with
the device), and is reused by every layer.

Layout:

* The forest is first **graded**: wherever a child sits more than one level
  below its parent, unary pass-through nodes are inserted between them.  A
  node with a single child has no sibling, keeps all of its mass
  (:math:`\mu = 1`) and has the statistics of its child, so grading never
  changes the attention; it makes every child of a height-:math:`h+1` node a
  height-:math:`h` node, so each level of the dynamic program is one
  contiguous block.
* Level :math:`h` holds the nodes of height :math:`h`: first the children of
  the height-:math:`h+1` families, then the roots of height :math:`h`.
  Families are ordered by size, so that equal-sized families form contiguous
  :class:`Bucket` blocks that reshape to ``[families, size, ...]`` without a
  copy; small groups of nearly equal sizes are merged into one padded bucket to
  bound the number of kernel launches.  Inside a family, children keep the
  order of their node indices (this is the order ``causal`` refers to).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hsa_geo._checks import as_bool, as_int

__all__ = ['Hierarchy', 'Bucket', 'Level']

# Merging families of another size into a bucket pads them to the bucket's
# width.  It pays while the extra score entries (families x (b_new^2 - b^2))
# cost less than launching one more bucket; this is that break-even, in score
# entries per head, tuned on random ragged trees on a 2-core CPU.
_BUCKET_OVERHEAD_ENTRIES = 1 << 11


@dataclass
class Bucket:
    r"""Families of one level that are processed together as one dense block.

    Attributes:
        size (int): The (padded) family width :math:`b`.
        num_families (int): Number of families :math:`F` in the bucket.
        child_start (int), child_end (int): The children's range in level order.
        family_start (int), family_end (int): The families' range in family order.
        pair_start (int), pair_end (int): The range of the bucket's ordered
            sibling pairs in :attr:`Hierarchy.sibling_index`.
        index (Tensor, optional): ``[F, size]`` positions of the children
            relative to ``child_start`` for padded buckets (padding points to
            ``child_end - child_start``, a zero row); :obj:`None` when every
            family has exactly ``size`` children.
        pair_index (Tensor, optional): ``[F, size, size]`` positions of the
            pairs relative to ``pair_start`` for padded buckets (invalid pairs
            point to ``pair_end - pair_start``).
        child_slots (Tensor, optional): For padded buckets, the flat positions
            in ``[F * size]`` of the real children, in level order.
        pair_slots (Tensor, optional): For padded buckets, the flat positions
            in ``[F * size * size]`` of the real pairs, in pair order.
        leaf_count (Tensor): ``[F, size]`` number of leaves :math:`n(C)` below
            each child, zero at padding (float64).
        unit (bool): Every child is a single-leaf subtree (:math:`n = 1`).
    """
    size: int
    num_families: int
    child_start: int
    child_end: int
    family_start: int
    family_end: int
    pair_start: int
    pair_end: int
    index: Optional[Tensor]
    pair_index: Optional[Tensor]
    leaf_count: Tensor
    unit: bool
    child_slots: Optional[Tensor] = None
    pair_slots: Optional[Tensor] = None

    @property
    def padded(self) -> bool:
        return self.index is not None

    def to(self, device) -> 'Bucket':
        def move(t):
            return None if t is None else t.to(device)

        return Bucket(self.size, self.num_families, self.child_start,
                      self.child_end, self.family_start, self.family_end,
                      self.pair_start, self.pair_end, move(self.index),
                      move(self.pair_index), move(self.leaf_count), self.unit,
                      move(self.child_slots), move(self.pair_slots))


@dataclass
class Level:
    r"""The nodes of one height, in the engine's order.

    Attributes:
        num_children (int): Nodes of this height that have a parent; they come
            first in level order.
        num_roots (int): Roots of this height; they come last.
        buckets (List[Bucket]): The families whose children are this level's
            nodes (empty on the top level).
        rep (Tensor): ``[num_children + num_roots]`` the user's node index that
            each position stands for (a pass-through node stands for the child
            below it); used to gather position vectors.
        parent_position (Tensor, optional): ``[num_families]`` the position, in
            the next level's order, of each family's parent; :obj:`None` when it
            is the identity.
        family_of_child (Tensor, optional): ``[num_children]`` the family that
            each non-root node of this level heads one level down (its index in
            the family order of the level below); :obj:`None` when identity.
        leaf_count (Tensor): ``[num_children + num_roots]`` :math:`n(A)`, int64.
    """
    num_children: int
    num_roots: int
    buckets: List[Bucket]
    rep: Tensor
    parent_position: Optional[Tensor]
    family_of_child: Optional[Tensor]
    leaf_count: Tensor

    @property
    def num_nodes(self) -> int:
        return self.num_children + self.num_roots

    def to(self, device) -> 'Level':
        def move(t):
            return None if t is None else t.to(device)

        return Level(self.num_children, self.num_roots,
                     [b.to(device) for b in self.buckets], move(self.rep),
                     move(self.parent_position), move(self.family_of_child),
                     move(self.leaf_count))


def _check_parent(parent, num_leaves) -> Tensor:
    if not isinstance(parent, Tensor):
        try:
            parent = torch.as_tensor(parent)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"'parent' must be a LongTensor of shape "
                            f"[num_nodes], got {type(parent).__name__}") from e
        if parent.numel() == 0:
            parent = parent.long()
    if parent.is_floating_point() or parent.is_complex() or parent.dtype == torch.bool:
        raise TypeError(f"'parent' must be an integer tensor, got dtype "
                        f"{parent.dtype}")
    if parent.dim() != 1:
        raise ValueError(f"'parent' must be one-dimensional [num_nodes], got "
                         f"shape {list(parent.shape)}")
    num_leaves = as_int(num_leaves, 'num_leaves')
    num_nodes = parent.numel()
    if num_leaves < 1:
        raise ValueError(f"'num_leaves' must be at least 1, got {num_leaves}")
    if num_leaves > num_nodes:
        raise ValueError(f"'num_leaves' ({num_leaves}) is larger than the "
                         f"number of nodes in 'parent' ({num_nodes})")
    # a copy of our own: a caller writing into its tensor later must not
    # change this hierarchy behind the compiled layout's back
    parent = parent.detach().to(device='cpu', dtype=torch.long, copy=True)
    bad = (parent < -1) | (parent >= num_nodes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"'parent' holds an index out of range: parent[{i}] "
                         f"= {int(parent[i])}, expected -1 (root) or a node "
                         f"index in [0, {num_nodes - 1}]")
    has_parent = parent >= 0
    bad = has_parent & (parent < num_leaves)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"node {int(parent[i])} is a leaf (nodes 0.."
                         f"{num_leaves - 1} are the leaves) but is the parent "
                         f"of node {i} in 'parent'")
    num_children = torch.bincount(parent[has_parent], minlength=num_nodes)
    childless = num_children[num_leaves:] == 0
    if bool(childless.any()):
        i = int(childless.nonzero()[0]) + num_leaves
        raise ValueError(f"internal node {i} has no children (nodes "
                         f"{num_leaves}..{num_nodes - 1} are internal and "
                         f"need at least one child; leaves are 0.."
                         f"{num_leaves - 1})")
    return parent


def _depth(parent: Tensor) -> Tensor:
    r"""Distance to the root by pointer jumping; raises on cycles."""
    num_nodes = parent.numel()
    sentinel = num_nodes  # an extra node that is its own parent
    jump = torch.cat([torch.where(parent < 0, sentinel, parent),
                      torch.tensor([sentinel])])
    dist = torch.cat([(parent >= 0).long(), torch.zeros(1, dtype=torch.long)])
    for _ in range(max(1, math.ceil(math.log2(num_nodes + 1))) + 1):
        dist = dist + dist[jump]
        jump = jump[jump]
    stuck = jump[:num_nodes] != sentinel
    if bool(stuck.any()):
        i = int(stuck.nonzero()[0])
        # Walk the cycle once to name it.
        seen, j = [], i
        while j not in seen and len(seen) < 10:
            seen.append(j)
            j = int(parent[j])
        raise ValueError(f"'parent' contains a cycle (node {i} never reaches "
                         f"a root; e.g. {' -> '.join(map(str, seen))} -> ...)")
    return dist[:num_nodes]


def _height(parent: Tensor, depth: Tensor) -> Tensor:
    r"""Height above the lowest leaf of each subtree (leaves: 0)."""
    height = torch.zeros_like(parent)
    order = torch.argsort(depth, descending=True, stable=True)
    counts = torch.bincount(depth, minlength=int(depth.max()) + 1).flip(0)
    start = 0
    for count in counts.tolist():
        nodes = order[start:start + count]
        start += count
        nodes = nodes[parent[nodes] >= 0]
        if nodes.numel():
            height.scatter_reduce_(0, parent[nodes], height[nodes] + 1,
                                   reduce='amax')
    return height


class Hierarchy:
    r"""A forest compiled for the Hierarchical Self-Attention dynamic program
    of `"Hierarchical Self-Attention: Generalizing Neural Attention Mechanics
    to Multi-Scale Problems" <https://arxiv.org/abs/2509.15448>`_ (Amizadeh et
    al., NeurIPS 2025).

    Nodes ``0 .. num_leaves - 1`` are the leaves, in the row order of the
    ``q``/``k``/``v`` tensors given to :func:`hsa_geo.hsa`; the other nodes are
    internal; every root (a node whose parent is ``-1``) heads an independent
    tree.  Build it with :meth:`from_parent`; it is validated once and reused.

    Example::

        >>> parent = torch.tensor([4, 4, 5, 5, 6, 6, -1])  # 4 leaves, 2 pairs
        >>> h = Hierarchy.from_parent(parent, num_leaves=4)
        >>> h
        Hierarchy(num_nodes=7, num_leaves=4, num_roots=1, depth=2, max_branching=2)
    """
    def __init__(self, parent: Tensor, num_leaves: int, levels: List[Level],
                 leaf_perm: Optional[Tensor], num_pairs: int, depth: int,
                 max_branching: int, num_roots: int):
        self.parent = parent
        self.num_leaves = num_leaves
        self.levels = levels
        self.leaf_perm = leaf_perm
        self.num_pairs = num_pairs
        self.depth = depth
        self.max_branching = max_branching
        self.num_roots = num_roots
        self._sibling_index: Optional[Tensor] = None
        # set by from_hetero: node type -> (start, end) in the global numbering
        self.node_slices: Dict[str, Tuple[int, int]] = {}
        self.leaf_types: List[str] = []

    # ------------------------------------------------------------------ build
    @classmethod
    def from_parent(cls, parent: Union[Tensor, Sequence[int]],
                    num_leaves: int) -> 'Hierarchy':
        r"""Compiles a forest given as a parent vector.

        Args:
            parent (LongTensor): ``[num_nodes]``, the parent of every node, or
                ``-1`` for a root.  Nodes ``0 .. num_leaves - 1`` are leaves and
                may not have children; every other node needs one or more.
            num_leaves (int): The number of leaves.

        Unary chains, families of one child, single-leaf trees and any number
        of roots are valid.  Raises :class:`ValueError` on cycles, indices out
        of range, leaves with children and childless internal nodes, and
        :class:`TypeError` on non-integer input.
        """
        device = parent.device if isinstance(parent, Tensor) else torch.device('cpu')
        parent = _check_parent(parent, num_leaves)
        depth = _depth(parent)
        height = _height(parent, depth)
        num_nodes = parent.numel()
        is_root = parent < 0
        num_roots = int(is_root.sum())
        children_count = torch.bincount(parent[~is_root], minlength=num_nodes)
        max_branching = int(children_count.max()) if num_nodes > num_leaves else 0
        tree_depth = int(depth.max())

        # ---- grade: insert pass-through nodes so each child is one below its parent
        gparent, gheight, rep = _grade(parent, height)
        total = gparent.numel()
        is_root_g = gparent < 0

        # ---- leaf counts, bottom-up by height
        max_height = int(gheight.max())
        leaf_count = torch.zeros(total, dtype=torch.long)
        leaf_count[:num_leaves] = 1
        by_height = torch.argsort(gheight, stable=True)
        height_sizes = torch.bincount(gheight, minlength=max_height + 1).tolist()
        height_nodes, start = [], 0
        for size in height_sizes:
            height_nodes.append(by_height[start:start + size])
            start += size
        for h in range(max_height):
            nodes = height_nodes[h]
            nodes = nodes[~is_root_g[nodes]]
            leaf_count.index_add_(0, gparent[nodes], leaf_count[nodes])
        gchildren = torch.bincount(gparent[~is_root_g], minlength=total)

        # ---- level orders, top-down
        position = torch.full((total,), -1, dtype=torch.long)
        top = height_nodes[max_height]
        top = top[torch.argsort(rep[top], stable=True)]
        position[top] = torch.arange(top.numel())
        orders: List[Tensor] = [None] * (max_height + 1)  # type: ignore
        orders[max_height] = top
        level_counts = [(0, top.numel())] * (max_height + 1)
        family_orders: List[Tensor] = [None] * (max_height + 1)  # type: ignore
        for h in range(max_height - 1, -1, -1):
            parents = orders[h + 1]
            # family order: parents sorted by (number of children, position)
            fam_perm = torch.argsort(gchildren[parents], stable=True)
            family_orders[h] = fam_perm
            family_rank = torch.empty(total, dtype=torch.long)
            family_rank[parents[fam_perm]] = torch.arange(parents.numel())
            nodes = height_nodes[h]
            kids = nodes[~is_root_g[nodes]]
            roots = nodes[is_root_g[nodes]]
            kids = kids[torch.argsort(rep[kids], stable=True)]
            kids = kids[torch.argsort(family_rank[gparent[kids]], stable=True)]
            roots = roots[torch.argsort(rep[roots], stable=True)]
            order = torch.cat([kids, roots])
            position[order] = torch.arange(order.numel())
            orders[h] = order
            level_counts[h] = (kids.numel(), roots.numel())
        level_counts[max_height] = (0, top.numel())

        # ---- levels and buckets
        levels: List[Level] = []
        pair_offset = 0
        for h in range(max_height + 1):
            order = orders[h]
            num_kids, num_top = level_counts[h]
            buckets: List[Bucket] = []
            parent_position = family_of_child = None
            if h < max_height:
                parents = orders[h + 1]
                fam_perm = family_orders[h]
                sizes = gchildren[parents[fam_perm]]
                buckets, pair_offset = _make_buckets(
                    sizes, leaf_count[order[:num_kids]], pair_offset)
                if not _is_identity(fam_perm):
                    parent_position = fam_perm
            if h > 0:
                # family order of level h-1 vs level order of this level
                fam_perm = family_orders[h - 1]
                inverse = torch.empty_like(fam_perm)
                inverse[fam_perm] = torch.arange(fam_perm.numel())
                inverse = inverse[:num_kids]
                if not _is_identity(inverse):
                    family_of_child = inverse
            levels.append(Level(num_kids, num_top, buckets, rep[order],
                                parent_position, family_of_child,
                                leaf_count[order]))

        leaf_perm = rep[orders[0]]
        if _is_identity(leaf_perm):
            leaf_perm = None
        out = cls(parent, num_leaves, levels, leaf_perm, pair_offset,
                  tree_depth, max_branching, num_roots)
        return out.to(device) if device.type != 'cpu' else out

    @classmethod
    def from_batch(cls, batch: Optional[Tensor], num_nodes: int) -> 'Hierarchy':
        r"""One flat family per graph: node ``i`` is a leaf whose parent is
        the root of graph ``batch[i]`` (all nodes under one root when
        :obj:`batch` is :obj:`None`).  HSA over it is softmax attention within
        each graph.  Graphs without nodes (gaps in :obj:`batch`) get no root;
        the roots are in the order of the graph indices."""
        num_nodes = as_int(num_nodes, 'num_nodes', minimum=1)
        if batch is None:
            parent = torch.full((num_nodes + 1, ), num_nodes, dtype=torch.long)
            parent[-1] = -1
            return cls.from_parent(parent, num_nodes)
        if not isinstance(batch, Tensor):
            raise TypeError(f"'batch' must be a LongTensor or None, got "
                            f"{type(batch).__name__}")
        if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
            raise TypeError(f"'batch' must be an integer tensor (the graph index of "
                            f"every node), got dtype {batch.dtype}")
        if batch.dim() != 1 or batch.numel() != num_nodes:
            raise ValueError(f"'batch' must have shape [num_nodes={num_nodes}], got "
                             f"{list(batch.shape)}")
        cpu = batch.long().cpu()
        if bool((cpu < 0).any()):
            i = int((cpu < 0).nonzero()[0])
            raise ValueError(f"'batch' must hold graph indices >= 0, got batch[{i}] = "
                             f"{int(cpu[i])}")
        graphs, graph_of_node = torch.unique(cpu, return_inverse=True)
        parent = torch.cat([num_nodes + graph_of_node,
                            torch.full((graphs.numel(), ), -1, dtype=torch.long)])
        out = cls.from_parent(parent, num_nodes)
        return out.to(batch.device) if batch.device.type != 'cpu' else out

    @classmethod
    def from_hetero(cls, data, num_nodes_dict: Optional[Dict[str, int]] = None,
                    relation: str = 'in', root_leaves: bool = False) -> 'Hierarchy':
        r"""Compiles a hierarchy stored as PyG heterogeneous graph.

        Every node type that is the destination of a ``(child_type, relation,
        parent_type)`` edge type is a cluster type; the other node types with
        such edges are leaf types; node types without them are ignored.  Each
        edge goes from a node to its parent (child -> parent); a cluster node
        without an outgoing edge is a root.  Batched :class:`HeteroData` (from
        PyG's :class:`~torch_geometric.loader.DataLoader`) is a forest whose
        edge indices PyG has already offset.

        Nodes are numbered leaf types first, then cluster types, each type in
        the order of ``data.node_types`` and its nodes in their own order; the
        result's :attr:`node_slices` maps each type to its ``(start, end)``.

        Args:
            data (HeteroData or dict): A (batched) ``HeteroData``, or its
                ``edge_index_dict`` together with :obj:`num_nodes_dict`.
            num_nodes_dict (dict, optional): Number of nodes per node type;
                taken from :obj:`data` when it is a ``HeteroData``.
            relation (str, optional): The relation name of the node-to-parent
                edges. (default: :obj:`'in'`)
            root_leaves (bool, optional): Accept leaf nodes without a parent
                edge as single-leaf trees of their own.  Off by default, since
                a leaf that lost its parent edge is far more often a bug of the
                builder than an intended tree. (default: :obj:`False`)
        """
        root_leaves = as_bool(root_leaves, 'root_leaves')
        if isinstance(data, dict):
            edge_index_dict = data
            if num_nodes_dict is None:
                raise ValueError("'num_nodes_dict' is required when 'data' is an "
                                 "edge_index_dict")
            node_types = list(num_nodes_dict)
        elif hasattr(data, 'edge_types') and hasattr(data, 'node_types'):
            edge_index_dict = {key: data[key].edge_index for key in data.edge_types
                               if 'edge_index' in data[key]}
            node_types = list(data.node_types)
            if num_nodes_dict is None:
                num_nodes_dict = {t: int(data[t].num_nodes or 0) for t in node_types}
        else:
            raise TypeError(f"'data' must be a HeteroData hierarchy or an "
                            f"edge_index_dict, got {type(data).__name__}")
        links = {key: ei for key, ei in edge_index_dict.items() if key[1] == relation}
        if not links:
            raise ValueError(f"'data' has no edge type (child, {relation!r}, parent); "
                             f"found {list(edge_index_dict)}")
        for key, ei in links.items():
            _check_link(key, ei, num_nodes_dict)
            for t in (key[0], key[2]):
                if t not in node_types:
                    node_types.append(t)
        cluster = {dst for _, _, dst in links}
        # node types without any node-to-parent edge (e.g. a mesh's vertices)
        # are not part of the hierarchy
        linked = cluster | {src for src, _, _ in links}
        node_types = [t for t in node_types if t in linked]
        leaf_types = [t for t in node_types if t not in cluster]
        if not leaf_types:
            raise ValueError(f"every node type of the {relation!r} edges is the parent "
                             f"in some edge type ({sorted(cluster)}); expected at least "
                             f"one leaf node type")
        order = leaf_types + [t for t in node_types if t in cluster]
        slices, start = {}, 0
        for t in order:
            slices[t] = (start, start + int(num_nodes_dict[t]))
            start = slices[t][1]
        device = next(iter(links.values())).device
        parent = torch.full((start, ), -1, dtype=torch.long, device=device)
        out_degree = torch.zeros(start, dtype=torch.long, device=device)
        in_degree = torch.zeros(start, dtype=torch.long, device=device)
        for (src, _, dst), ei in links.items():
            child, par = ei[0].long() + slices[src][0], ei[1].long() + slices[dst][0]
            parent[child] = par
            out_degree.index_add_(0, child, torch.ones_like(child))
            in_degree.index_add_(0, par, torch.ones_like(par))

        def name(node: int) -> str:
            kind = next(t for t in order if slices[t][0] <= node < slices[t][1])
            return f"node {node - slices[kind][0]} of type {kind!r}"

        if bool((out_degree > 1).any()):
            node = int((out_degree > 1).nonzero()[0])
            hint = ''
            if any(int(e[1].numel()) == int(torch.unique(e[1]).numel()) and
                   int(e[0].numel()) > int(torch.unique(e[0]).numel())
                   for e in links.values()):
                hint = (f"; the edges look reversed: edges of relation {relation!r} go "
                        f"from the child (row 0) to its parent (row 1)")
            raise ValueError(f"{name(node)} has {int(out_degree[node])} parent edges; "
                             f"a hierarchy is a forest (one parent per node){hint}")
        num_leaves = slices[leaf_types[-1]][1]
        childless = in_degree[num_leaves:] == 0
        if bool(childless.any()):
            node = int(childless.nonzero()[0]) + num_leaves
            raise ValueError(f"{name(node)} has no children; every cluster node needs "
                             f"at least one ({relation!r} edge pointing to it)")
        orphans = out_degree[:num_leaves] == 0
        if not root_leaves and bool(orphans.any()):
            node = int(orphans.nonzero()[0])
            raise ValueError(f"{name(node)} is a leaf without a parent edge "
                             f"({int(orphans.sum())} such leaves); pass root_leaves=True "
                             f"to make such leaves trees of their own")
        out = cls.from_parent(parent, num_leaves)
        out.node_slices = slices
        out.leaf_types = leaf_types
        return out

    # ------------------------------------------------------------ properties
    @property
    def num_nodes(self) -> int:
        return self.parent.numel()

    @property
    def device(self) -> torch.device:
        return self.parent.device

    @property
    def sibling_index(self) -> Tensor:
        r"""``[2, num_pairs]`` the ordered sibling pairs :math:`(A, B)`,
        :math:`A \neq B`, as user node indices: row 0 is the attending node,
        row 1 the attended one.  A ``bias`` given to :func:`hsa_geo.hsa` is
        aligned with these columns (like ``edge_attr`` with ``edge_index``)."""
        if self._sibling_index is None:
            self._sibling_index = _sibling_pairs(self).to(self.device)
        return self._sibling_index

    def to(self, device) -> 'Hierarchy':
        r"""Moves the compiled hierarchy to :obj:`device`.  Only the device
        can change: every tensor of a hierarchy is an index (int64) or a leaf
        count, so a dtype is refused with a :class:`TypeError`."""
        if isinstance(device, torch.dtype):
            raise TypeError(f"'device' must be a device, got the dtype {device}: a "
                            f"Hierarchy holds integer indices and moves between "
                            f"devices only")
        try:
            device = torch.device(device)
        except (TypeError, RuntimeError) as error:
            raise TypeError(f"'device' must be a torch.device or a device string such "
                            f"as 'cuda', got {device!r}") from error
        out = Hierarchy(self.parent.to(device), self.num_leaves,
                        [lvl.to(device) for lvl in self.levels],
                        None if self.leaf_perm is None else self.leaf_perm.to(device),
                        self.num_pairs, self.depth, self.max_branching,
                        self.num_roots)
        if self._sibling_index is not None:
            out._sibling_index = self._sibling_index.to(device)
        out.node_slices, out.leaf_types = dict(self.node_slices), list(self.leaf_types)
        return out

    def cpu(self) -> 'Hierarchy':
        return self.to('cpu')

    def cuda(self, device=None) -> 'Hierarchy':
        return self.to(device if device is not None else 'cuda')

    def __eq__(self, other) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.num_leaves == other.num_leaves
                and self.num_nodes == other.num_nodes
                and bool(torch.equal(self.parent.cpu(), other.parent.cpu())))

    __hash__ = None  # mutable tensors inside; equality is by value

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'num_leaves={self.num_leaves}, num_roots={self.num_roots}, '
                f'depth={self.depth}, max_branching={self.max_branching})')


def _check_link(key, edge_index, num_nodes_dict) -> None:
    r"""One ``(child, relation, parent)`` edge index: an integer ``[2, E]``
    tensor whose rows index existing children and parents."""
    src, _, dst = key
    for t in (src, dst):
        if t not in num_nodes_dict:
            raise ValueError(f"edge type {key} names node type {t!r} whose number of "
                             f"nodes is unknown")
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'edge_index' of {key} must be a LongTensor [2, num_edges], "
                        f"got {type(edge_index).__name__}")
    if edge_index.is_floating_point() or edge_index.is_complex() or \
            edge_index.dtype == torch.bool:
        raise TypeError(f"'edge_index' of {key} must be an integer tensor, got dtype "
                        f"{edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' of {key} must have shape [2, num_edges], got "
                         f"{list(edge_index.shape)}")
    for row, t, role in ((0, src, 'child'), (1, dst, 'parent')):
        count = int(num_nodes_dict[t])
        index = edge_index[row]
        if index.numel() and (bool((index < 0).any()) or bool((index >= count).any())):
            bad = index[(index < 0) | (index >= count)][0]
            raise ValueError(f"'edge_index' of {key} holds the {role} index "
                             f"{int(bad)}, but node type {t!r} has {count} nodes "
                             f"(expected 0..{count - 1})")


def _is_identity(perm: Tensor) -> bool:
    return bool(torch.equal(perm, torch.arange(perm.numel())))


def _grade(parent: Tensor, height: Tensor):
    r"""Inserts pass-through nodes so that every child sits exactly one level
    below its parent.  Returns the new parent vector, heights and, for every
    node, the user node it stands for (pass-through nodes stand for the child
    below them, whose place they take in the parent's family)."""
    num_nodes = parent.numel()
    child = (parent >= 0).nonzero().view(-1)
    gap = height[parent[child]] - 1 - height[child]
    rep = torch.arange(num_nodes)
    has_gap = gap > 0
    if not bool(has_gap.any()):
        return parent.clone(), height.clone(), rep
    child, gap = child[has_gap], gap[has_gap]
    num_new = int(gap.sum())
    owner = torch.repeat_interleave(child, gap)            # user child of each new node
    first = torch.cumsum(gap, 0) - gap                     # offset of each chain
    step = torch.arange(num_new) - torch.repeat_interleave(first, gap)  # 0..gap-1
    new_ids = num_nodes + torch.arange(num_new)
    last = step == torch.repeat_interleave(gap, gap) - 1
    new_parent = torch.where(last, parent[owner], new_ids + 1)
    new_height = height[owner] + 1 + step
    gparent = torch.cat([parent, new_parent])
    gparent[child] = num_nodes + first                     # child -> bottom of chain
    gheight = torch.cat([height, new_height])
    rep = torch.cat([rep, owner])
    return gparent, gheight, rep


def _make_buckets(sizes: Tensor, child_leaf_count: Tensor, pair_offset: int):
    r"""Groups families (sorted by size) into dense buckets."""
    buckets: List[Bucket] = []
    if sizes.numel() == 0:
        return buckets, pair_offset
    values, counts = torch.unique_consecutive(sizes, return_counts=True)
    # Greedy over sizes, ascending: a size class joins the current bucket when
    # padding the bucket's families up to the new width costs less than a
    # bucket of its own.  Lone children (size 1) always form their own bucket.
    groups: List[List[int]] = []
    families, width = 0, 0
    for i, (s, c) in enumerate(zip(values.tolist(), counts.tolist())):
        if groups and width > 1 and s > 1 and \
                families * (s * s - width * width) <= _BUCKET_OVERHEAD_ENTRIES:
            groups[-1].append(i)
            families += c
        else:
            groups.append([i])
            families = c
        width = s

    fam, child = 0, 0
    for group in groups:
        group_sizes = [int(values[j]) for j in group]
        group_counts = [int(counts[j]) for j in group]
        num_fam = sum(group_counts)
        num_child = sum(s * c for s, c in zip(group_sizes, group_counts))
        width = max(group_sizes)
        num_pairs = sum(s * (s - 1) * c for s, c in zip(group_sizes, group_counts))
        counts_here = child_leaf_count[child:child + num_child]
        if len(group) == 1:
            index = pair_index = None
            leaf_count = counts_here.view(num_fam, width).double()
        else:
            fam_sizes = sizes[fam:fam + num_fam]
            starts = torch.cumsum(fam_sizes, 0) - fam_sizes
            col = torch.arange(width)
            valid = col.view(1, -1) < fam_sizes.view(-1, 1)
            index = torch.where(valid, starts.view(-1, 1) + col, num_child)
            leaf_count = torch.cat([counts_here, counts_here.new_zeros(1)])[index].double()
            # pairs (i, j), i != j, both valid, enumerated row-major per family
            pair_valid = valid.unsqueeze(2) & valid.unsqueeze(1) & \
                ~torch.eye(width, dtype=torch.bool)
            flat = pair_valid.view(-1)
            pair_index = torch.full((flat.numel(),), num_pairs, dtype=torch.long)
            pair_index[flat] = torch.arange(num_pairs)
            pair_index = pair_index.view(num_fam, width, width)
        unit = bool((counts_here == 1).all())
        child_slots = pair_slots = None
        if index is not None:
            child_slots = valid.view(-1).nonzero().view(-1)
            pair_slots = flat.nonzero().view(-1)
        buckets.append(Bucket(width, num_fam, child, child + num_child, fam,
                              fam + num_fam, pair_offset, pair_offset + num_pairs,
                              index, pair_index, leaf_count, unit, child_slots,
                              pair_slots))
        fam += num_fam
        child += num_child
        pair_offset += num_pairs
    return buckets, pair_offset


def _sibling_pairs(h: Hierarchy) -> Tensor:
    out = []
    for level in h.levels:
        rep = level.rep.cpu()
        for bucket in level.buckets:
            if bucket.size < 2:
                continue
            kids = rep[bucket.child_start:bucket.child_end]
            b, f = bucket.size, bucket.num_families
            if bucket.index is None:
                kids = kids.view(f, b)
            else:
                kids = torch.cat([kids, kids.new_full((1,), -1)])[bucket.index.cpu()]
            src = kids.unsqueeze(2).expand(f, b, b)
            dst = kids.unsqueeze(1).expand(f, b, b)
            if bucket.index is None:
                keep = ~torch.eye(b, dtype=torch.bool).expand(f, b, b)
            else:
                keep = bucket.pair_index.cpu() < (bucket.pair_end - bucket.pair_start)
            out.append(torch.stack([src[keep], dst[keep]]))
    if not out:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.cat(out, dim=1)
