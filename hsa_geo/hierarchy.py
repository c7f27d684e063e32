r"""The compiled hierarchy: a forest laid out for the HSA dynamic program.

A :class:`Hierarchy` is to :func:`hsa_geo.hsa` what PyG's ``EdgeIndex`` is to
message passing: it is built and validated once per batch, holds every
integer the engine needs as Python ints (so the forward pass never syncs with
the device), and is reused by every layer.  It is the thin public object: the
user's parent vector (validated, owned, device-movable) and the engine's
:class:`~hsa_geo.engine.layout.Layout` of it (unary chains collapsed, levels,
padded size classes; see :mod:`hsa_geo.engine.layout`).
"""
from __future__ import annotations

import itertools
import math
import secrets
import weakref
from types import MappingProxyType
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hsa_geo._checks import as_bool, as_int, is_index_dtype, versions
from hsa_geo.engine.forest import Forest
from hsa_geo.engine.layout import Layout

__all__ = ['Hierarchy', 'hierarchy_node_types']


def _check_parent(parent, num_leaves) -> Tensor:
    if not isinstance(parent, Tensor):
        try:
            parent = torch.as_tensor(parent)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"'parent' must be a LongTensor of shape "
                            f"[num_nodes], got {type(parent).__name__}") from e
        if parent.numel() == 0:
            parent = parent.long()
    if not is_index_dtype(parent):
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


def _tree_of_leaves(parent: Tensor, num_leaves: int) -> Tuple[Tensor, Tensor]:
    r"""The root node ids ``[num_roots]`` (in node order) and, for every leaf,
    the index of its tree among them ``[num_leaves]``, by pointer jumping."""
    nodes = torch.arange(parent.numel())
    top = torch.where(parent < 0, nodes, parent)
    for _ in range(max(1, math.ceil(math.log2(parent.numel() + 1))) + 1):
        top = top[top]
    roots = (parent < 0).nonzero().view(-1)
    tree_of_root = torch.full((parent.numel(), ), -1, dtype=torch.long)
    tree_of_root[roots] = torch.arange(roots.numel())
    return roots, tree_of_root[top[:num_leaves]]


def hierarchy_node_types(edge_types, node_types, relation: str = 'in'
                         ) -> Tuple[List[str], List[str]]:
    r"""The leaf and cluster node types of a hierarchy stored as PyG
    heterogeneous graph, in the order of :obj:`node_types`: every node type
    that is the destination of a ``(child_type, relation, parent_type)`` edge
    type is a cluster type, the other node types with such edges are leaf
    types, node types without them are not part of the hierarchy.  The one
    place this rule is written (:meth:`Hierarchy.from_hetero` and
    :class:`~hsa_geo.transforms.FlatHierarchy` use it)."""
    links = [key for key in edge_types if key[1] == relation]
    clusters = {dst for _, _, dst in links}
    linked = clusters | {src for src, _, _ in links}
    ordered = list(node_types) + [t for key in links for t in (key[0], key[2])
                                  if t not in node_types]
    ordered = list(dict.fromkeys(t for t in ordered if t in linked))
    return ([t for t in ordered if t not in clusters], [t for t in ordered if t in clusters])


#: The public fields of a Hierarchy, set once by its constructor.
_FIELDS = frozenset({'parent', 'num_leaves', 'forest', 'layout', 'depth', 'max_branching', 'num_roots',
                     'roots', 'leaf_tree', 'node_slices', 'leaf_types'})


# Hierarchies by the identity of their parent tensor and by their token:
# under torch.compile the engine runs as a custom op (hsa_geo.compiled) that
# is handed tensors only, and these find the compiled layout behind the tensor
# it was given.
_BY_PARENT: Dict[int, 'weakref.ref[Hierarchy]'] = {}
_BY_TOKEN: Dict[int, 'weakref.ref[Hierarchy]'] = {}
_SERIALS = itertools.count(1)
# a token names a hierarchy of this process only: one saved and loaded in
# another process (an exported program, say) must not name another hierarchy
_PROCESS = secrets.randbits(62)


def _forget(registry: dict, key: int, ref) -> None:
    if registry.get(key) is ref:
        del registry[key]


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
    def __init__(self, parent: Tensor, num_leaves: int, forest: Forest, depth: int,
                 max_branching: int, num_roots: int, roots: Tensor, leaf_tree: Tensor,
                 node_slices: Optional[Dict[str, Tuple[int, int]]] = None,
                 leaf_types: Sequence[str] = ()):
        set_ = object.__setattr__  # the public fields are read-only afterwards
        set_(self, 'parent', parent)
        set_(self, 'num_leaves', num_leaves)
        #: The engine's view (:class:`~hsa_geo.engine.forest.Forest`): the
        #: families of the fused CPU kernels and the padded layout, each
        #: compiled on first use.
        set_(self, 'forest', forest)
        set_(self, 'depth', depth)
        set_(self, 'max_branching', max_branching)
        set_(self, 'num_roots', num_roots)
        #: ``[num_roots]`` the root node ids in node order.
        set_(self, 'roots', roots)
        #: ``[num_leaves]`` for every leaf the index of its tree among
        #: :attr:`roots` (for a batch: the sample's index, like PyG's ``batch``).
        set_(self, 'leaf_tree', leaf_tree)
        #: node type -> ``(start, end)`` in the global numbering (set by
        #: :meth:`from_hetero` and :meth:`with_node_types`; read-only).
        set_(self, 'node_slices', MappingProxyType(dict(node_slices or {})))
        #: The leaf node types in node order (a tuple).
        set_(self, 'leaf_types', tuple(leaf_types))
        self._sibling_index: Optional[Tensor] = None
        self._versions = versions(parent, roots, leaf_tree)
        self._register()

    def __setattr__(self, name: str, value) -> None:
        if name in _FIELDS:
            raise AttributeError(
                f"Hierarchy.{name} cannot be set: a compiled Hierarchy is immutable (its "
                f"layout was compiled from it); build a new one with "
                f"Hierarchy.from_parent / from_hetero"
                + (" or give node types with Hierarchy.with_node_types"
                   if name in ('node_slices', 'leaf_types') else ''))
        object.__setattr__(self, name, value)

    def check_intact(self) -> None:
        r"""Raises :class:`ValueError` when a tensor of this hierarchy
        (:attr:`parent`, :attr:`roots`, :attr:`leaf_tree`) was modified in
        place after it was compiled: the compiled layout would no longer be
        the tree those tensors describe.  Every entry point of the engine
        calls it (it reads three version counters; no device sync)."""
        if self._versions is not None and \
                versions(self.parent, self.roots, self.leaf_tree) != self._versions:
            raise ValueError("a tensor of this Hierarchy (parent, roots or leaf_tree) was "
                             "modified in place after the hierarchy was compiled; a "
                             "compiled Hierarchy is immutable: build a new one with "
                             "Hierarchy.from_parent(new_parent, num_leaves)")

    def _register(self) -> None:
        ref = weakref.ref(self)
        key, serial = id(self.parent), next(_SERIALS)
        _BY_PARENT[key] = ref
        _BY_TOKEN[serial] = ref
        # the hierarchy's stand-in in a compiled graph: CPU int64 of fixed
        # shape [2] (this process, the serial), so that no size of the forest
        # becomes a size of the graph (sizes 0 and 1 or a node count equal to
        # another size would make torch.compile specialise and recompile)
        object.__setattr__(self, '_token', torch.tensor([_PROCESS, serial]))
        weakref.finalize(self, _forget, _BY_PARENT, key, ref)
        weakref.finalize(self, _forget, _BY_TOKEN, serial, ref)

    @property
    def token(self) -> Tensor:
        r"""``[2]`` a CPU int64 tensor naming this hierarchy, in this
        process, to the compiled operator (:meth:`of_token` finds it again)."""
        return self._token

    @classmethod
    def of_token(cls, token: Tensor) -> Optional['Hierarchy']:
        r"""The live hierarchy whose :attr:`token` holds these values, or
        :obj:`None` (also for a token of another process)."""
        process, serial = (int(x) for x in token.reshape(-1)[:2])
        if process != _PROCESS:
            return None
        ref = _BY_TOKEN.get(serial)
        found = ref() if ref is not None else None
        if found is not None:
            found.check_intact()
        return found

    @classmethod
    def of(cls, parent: Tensor) -> Optional['Hierarchy']:
        r"""The live hierarchy whose :attr:`parent` is this very tensor object,
        or :obj:`None`."""
        ref = _BY_PARENT.get(id(parent))
        found = ref() if ref is not None else None
        if found is None or found.parent is not parent:
            return None
        found.check_intact()
        return found

    def __getstate__(self):
        self.check_intact()
        state = dict(self.__dict__)
        state['node_slices'] = dict(self.node_slices)  # a mapping proxy does not pickle
        state.pop('_token', None)  # a serial of this process: a new one on loading
        return state

    def __setstate__(self, state):
        state = dict(state)
        state['node_slices'] = MappingProxyType(dict(state.get('node_slices', {})))
        state['leaf_types'] = tuple(state.get('leaf_types', ()))
        self.__dict__.update(state)
        self._versions = versions(self.parent, self.roots, self.leaf_tree)
        self._register()

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
        return cls._compile(parent, num_leaves)

    @classmethod
    def _compile(cls, parent, num_leaves, node_slices: Optional[Dict] = None,
                 leaf_types: Sequence[str] = ()) -> 'Hierarchy':
        device = parent.device if isinstance(parent, Tensor) else torch.device('cpu')
        parent = _check_parent(parent, num_leaves)
        num_leaves = as_int(num_leaves, 'num_leaves')
        depth = _depth(parent)
        num_nodes = parent.numel()
        is_root = parent < 0
        children = torch.bincount(parent[~is_root], minlength=num_nodes)
        max_branching = int(children.max()) if num_nodes > num_leaves else 0
        roots, leaf_tree = _tree_of_leaves(parent, num_leaves)
        out = cls(parent, num_leaves, Forest(parent, num_leaves), int(depth.max()),
                  max_branching, int(is_root.sum()), roots, leaf_tree, node_slices, leaf_types)
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
        if not is_index_dtype(batch):
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
        # node types without any node-to-parent edge (e.g. a mesh's vertices)
        # are not part of the hierarchy
        leaf_types, cluster_types = hierarchy_node_types(links, node_types, relation)
        cluster = set(cluster_types)
        if not leaf_types:
            raise ValueError(f"every node type of the {relation!r} edges is the parent "
                             f"in some edge type ({sorted(cluster)}); expected at least "
                             f"one leaf node type")
        order = leaf_types + cluster_types
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
        return cls._compile(parent, num_leaves, slices, leaf_types)

    def with_node_types(self, node_slices: Dict[str, Tuple[int, int]]) -> 'Hierarchy':
        r"""The same forest with named node types, as :meth:`from_hetero`
        records them: :obj:`node_slices` maps each type to its contiguous
        range ``(start, end)`` of node indices; the ranges, in order, must
        cover all nodes, and the types whose range lies among the leaves are
        the leaf types (for multi-modal layers, whose inputs are dictionaries
        over leaf types).  The compiled layout is shared, nothing is rebuilt.

        Example::

            >>> h = Hierarchy.from_parent(torch.tensor([3, 3, 3, -1]), 3)
            >>> h.with_node_types({'a': (0, 1), 'b': (1, 3), 'root': (3, 4)}).leaf_types
            ('a', 'b')
        """
        if not isinstance(node_slices, dict) or not node_slices:
            raise TypeError(f"'node_slices' must be a non-empty dict node type -> (start, "
                            f"end), got {type(node_slices).__name__}")
        slices, leaf_types, start = {}, [], 0
        for t, bounds in node_slices.items():
            if not isinstance(t, str):
                raise TypeError(f"'node_slices' keys must be node type names, got {t!r}")
            try:
                lo, hi = (as_int(b, f'node_slices[{t!r}]') for b in bounds)
            except (TypeError, ValueError):
                raise TypeError(f"'node_slices[{t!r}]' must be a pair of ints (start, end), "
                                f"got {bounds!r}") from None
            if lo != start or hi <= lo:
                raise ValueError(f"'node_slices' must be non-empty consecutive ranges from 0 "
                                 f"to num_nodes={self.num_nodes} in order; {t!r} is "
                                 f"({lo}, {hi}) where ({start}, ...) was expected")
            if lo < self.num_leaves < hi:
                raise ValueError(f"'node_slices[{t!r}]' = ({lo}, {hi}) mixes leaves and "
                                 f"internal nodes (the leaves are 0..{self.num_leaves - 1})")
            if hi <= self.num_leaves:
                leaf_types.append(t)
            slices[t], start = (lo, hi), hi
        if start != self.num_nodes:
            raise ValueError(f"'node_slices' covers nodes 0..{start - 1}, but the hierarchy "
                             f"has {self.num_nodes} nodes")
        return self._typed(slices, leaf_types)

    def _typed(self, slices: Dict[str, Tuple[int, int]], leaf_types) -> 'Hierarchy':
        self.check_intact()
        out = Hierarchy(self.parent.clone(), self.num_leaves, self.forest, self.depth,
                        self.max_branching, self.num_roots, self.roots, self.leaf_tree,
                        slices, leaf_types)
        out._sibling_index = self._sibling_index
        return out

    # ------------------------------------------------------------ properties
    @property
    def num_nodes(self) -> int:
        return self.parent.numel()

    @property
    def num_pairs(self) -> int:
        r"""The number of ordered sibling pairs (columns of
        :attr:`sibling_index`)."""
        return self.forest.num_pairs

    @property
    def num_levels(self) -> int:
        r"""Levels of the dynamic program: the height of the forest once unary
        chains are collapsed (the levels that have choices to make)."""
        return self.forest.num_levels

    @property
    def device(self) -> torch.device:
        return self.parent.device

    @property
    def layout(self) -> Layout:
        r"""The padded layout of the PyTorch and Triton paths
        (:mod:`hsa_geo.engine.layout`), compiled on first use."""
        return self.forest.layout

    @property
    def sibling_index(self) -> Tensor:
        r"""``[2, num_pairs]`` the ordered sibling pairs :math:`(A, B)`,
        :math:`A \neq B`, as user node indices: row 0 is the attending node,
        row 1 the attended one.  A ``bias`` given to :func:`hsa_geo.hsa` is
        aligned with these columns (like ``edge_attr`` with ``edge_index``).
        A node heading a unary chain stands for the chain (its single child
        has no siblings)."""
        self.check_intact()
        if self._sibling_index is None:
            self._sibling_index = self.forest.sibling_index()
        return self._sibling_index

    def to(self, device, non_blocking: bool = False) -> 'Hierarchy':
        r"""Moves the compiled hierarchy to :obj:`device`.  Only the device
        can change: every tensor of a hierarchy is an index (int64) or a leaf
        count, so a dtype is refused with a :class:`TypeError`.  PyG's
        ``batch.to(device)`` calls this for ``batch.hierarchy`` (see
        :class:`~hsa_geo.loader.HierarchyLoader`)."""
        if isinstance(device, torch.dtype):
            raise TypeError(f"'device' must be a device, got the dtype {device}: a "
                            f"Hierarchy holds integer indices and moves between "
                            f"devices only")
        try:
            device = torch.device(device)
        except (TypeError, RuntimeError) as error:
            raise TypeError(f"'device' must be a torch.device or a device string such "
                            f"as 'cuda', got {device!r}") from error
        if device == self.device:
            return self
        self.check_intact()
        move = dict(device=device, non_blocking=non_blocking)
        out = Hierarchy(self.parent.to(**move), self.num_leaves, self.forest.to(device),
                        self.depth, self.max_branching, self.num_roots,
                        self.roots.to(**move), self.leaf_tree.to(**move),
                        self.node_slices, self.leaf_types)
        if self._sibling_index is not None:
            out._sibling_index = self._sibling_index.to(device)
        share = self.__dict__.get('_hsa_share')  # a share of hsa_geo.distributed
        if share is not None:
            out._hsa_share = share
        return out

    def cpu(self) -> 'Hierarchy':
        return self.to('cpu')

    def cuda(self, device=None) -> 'Hierarchy':
        return self.to(device if device is not None else 'cuda')

    def __eq__(self, other) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        self.check_intact()
        other.check_intact()
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
    if not is_index_dtype(edge_index):
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
