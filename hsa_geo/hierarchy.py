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

from types import MappingProxyType
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hsa_geo import compiled
from hsa_geo._checks import as_int, versions
from hsa_geo.attention_inputs import prepare
from hsa_geo.engine.forest import Forest
from hsa_geo.engine.layout import Layout
from hsa_geo.hetero import hierarchy_node_types, parent_from_hetero
from hsa_geo.hierarchy_like import HierarchyLike
from hsa_geo.parent_vector import check_parent, compile_forest, flat_parent

__all__ = ['Hierarchy', 'hierarchy_node_types']


#: The public fields of a Hierarchy, set once by its constructor.
_FIELDS = frozenset({'parent', 'num_leaves', 'forest', 'layout', 'depth', 'max_branching',
                     'num_roots', 'roots', 'leaf_tree', 'node_slices', 'leaf_types'})


class Hierarchy(HierarchyLike):
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
        object.__setattr__(self, '_token', compiled.register(self, self.parent))

    @property
    def token(self) -> Tensor:
        r"""``[2]`` a CPU int64 tensor naming this hierarchy, in this
        process, to the compiled operator (:meth:`of_token` finds it again)."""
        return self._token

    @classmethod
    def of_token(cls, token: Tensor) -> Optional['Hierarchy']:
        r"""The live hierarchy whose :attr:`token` holds these values, or
        :obj:`None` (also for a token of another process)."""
        found = compiled.owner_of_token(token)
        return found if isinstance(found, Hierarchy) else None

    @classmethod
    def of(cls, parent: Tensor) -> Optional['Hierarchy']:
        r"""The live hierarchy whose :attr:`parent` is this very tensor object,
        or :obj:`None`."""
        found = compiled.owner_of_parent(parent)
        return found if isinstance(found, Hierarchy) else None

    # ------------------------------------------------------ HierarchyLike
    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, include_self: bool = False,
               causal: bool = False, scale: Optional[float] = None,
               dropout: float = 0.0) -> Tensor:
        r""":func:`hsa_geo.hsa` over this hierarchy (see there)."""
        call = prepare(q, k, v, pos, bias, include_self, causal, scale, dropout)
        if torch.compiler.is_compiling():  # the token: no size of the forest in the graph
            return compiled.run(call, self.token, 'token')
        self.check_intact()
        return compiled.run(call, self.token, 'token', forest=self.forest)

    def pair_hierarchy(self, num_leaves: int, device: torch.device) -> 'Hierarchy':
        r"""This hierarchy (see :class:`~hsa_geo.hierarchy_like.HierarchyLike`)."""
        return self

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
                 leaf_types: Sequence[str] = (), device=None) -> 'Hierarchy':
        r"""Checks and compiles a parent vector; :obj:`device` (default: the
        parent's) is where the result lives."""
        if device is None:
            device = parent.device if isinstance(parent, Tensor) else torch.device('cpu')
        parent, num_leaves = check_parent(parent, num_leaves)
        compiled = compile_forest(parent, num_leaves)
        out = cls(parent, num_leaves, compiled.forest, compiled.depth, compiled.max_branching,
                  compiled.roots.numel(), compiled.roots, compiled.leaf_tree, node_slices,
                  leaf_types)
        return out.to(device) if device.type != 'cpu' else out

    @classmethod
    def from_batch(cls, batch: Optional[Tensor], num_nodes: int) -> 'Hierarchy':
        r"""One flat family per graph: node ``i`` is a leaf whose parent is
        the root of graph ``batch[i]`` (all nodes under one root when
        :obj:`batch` is :obj:`None`).  HSA over it is softmax attention within
        each graph.  Graphs without nodes (gaps in :obj:`batch`) get no root;
        the roots are in the order of the graph indices."""
        out = cls.from_parent(flat_parent(batch, num_nodes), num_nodes)
        return out.to(batch.device) if batch is not None and batch.device.type != 'cpu' \
            else out

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
        parent, num_leaves, slices, leaf_types, device = parent_from_hetero(
            data, num_nodes_dict, relation, root_leaves)
        return cls._compile(parent, num_leaves, slices, leaf_types, device)

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
        r"""A copy on a CUDA device, as :meth:`torch.Tensor.cuda` takes it: a
        device, a device string or an index (:obj:`None`: the current one)."""
        if isinstance(device, int) and not isinstance(device, bool):
            device = torch.device('cuda', device)
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
