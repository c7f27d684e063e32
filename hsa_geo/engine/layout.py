r"""The level layout of a forest for the dynamic program, as data: the
compiled forest (:class:`Layout`) and its padded size classes
(:class:`SizeClass`).  :func:`hsa_geo.engine.builder.build_layout` makes one
from a parent vector (once per batch); :class:`hsa_geo.Hierarchy` holds it.

**Rows.**  The leaves stay where they are: the classes of the first level
(whose children are all leaves) index the user's ``q``/``k``/``v`` and output
rows directly, so the inputs are never copied or permuted.  The node buffer
holds the rest: first the *lifted* leaves (leaves whose parent is higher up,
e.g. one-token words directly under a sentence once the word is collapsed),
then the internal nodes level by level (level :math:`h` holds the nodes of
height :math:`h`; within a level, class by class and family by family, so the
parents of a class are one contiguous range), then one zero row that padding
points to.

**Size classes.**  The families of a level are cut into a few classes; each
class is one dense block ``[F, B]`` of child rows, padded to its widest
family (how the cut is chosen: :mod:`hsa_geo.engine.builder`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

__all__ = ['SizeClass', 'Layout', 'MASK_ENTRIES']

#: Classes of up to this many score entries keep their score masks and pair
#: ids; larger ones build them per chunk (they would cost memory like a level).
MASK_ENTRIES = 1 << 18


@dataclass
class SizeClass:
    r"""The families of one level padded to one width.

    Attributes:
        width (int): The padded family size :math:`B`.
        parent_start (int): Row of the first parent; the class's parents own
            rows ``parent_start .. parent_start + num_families - 1``, in the
            order of :attr:`child`.
        child (LongTensor): ``[F, B]`` rows of the children in the node
            buffer (padding: the zero row), or for a class of leaves
            (:attr:`leaves`) their leaf indices (padding: ``num_leaves``);
            inside a family, children in the order of their heading user node
            (the order ``causal`` refers to).
        child_node (LongTensor): ``[F, B]`` the user node heading each child
            (the top of its collapsed chain): its position vector and sibling
            pairs are the child's.  Padding: 0.
        weight (Tensor): ``[F, B]`` float64 :math:`n(C) / n(P)`, 0 at padding.
        log_count (Tensor): ``[F, B]`` float64 :math:`\log n(C)`,
            :math:`-\infty` at padding.
        sizes (LongTensor): ``[F]`` the true family sizes.
        pair_start (int): The class's first pair in
            :attr:`Layout.sibling_index` order.
        num_pairs (int): Its number of ordered sibling pairs.
        child_start (int, optional): When the children are the rows
            ``child_start .. child_start + F B - 1`` in block order (no
            padding), so that the block is a view of the buffer.
        leaves (bool): The children are leaves, read from the inputs.
    """
    width: int
    parent_start: int
    child: Tensor
    child_node: Tensor
    weight: Tensor
    log_count: Tensor
    sizes: Tensor
    pair_start: int
    num_pairs: int
    child_start: Optional[int] = None
    leaves: bool = False
    # tensors derived from the fields, each built on its first use (the
    # engine runs eagerly, or inside the opaque operator of hsa_geo.compiled
    # under torch.compile, so the cache is never traced) for the dtype and the
    # causal mode a call needs: a batch's hierarchy pays only for what runs
    derived: Dict = field(default_factory=dict, repr=False, compare=False)

    def _derived(self, key, make):
        out = self.derived.get(key)
        if out is None:
            out = self.derived[key] = make()
        return out

    @property
    def _small(self) -> bool:
        r"""Small enough to keep whole-class masks and pair ids."""
        return self.num_families * self.width * self.width <= MASK_ENTRIES

    def _pattern(self, causal: bool, dtype) -> Tensor:
        def make():
            rows = torch.arange(self.width, device=self.child.device)
            allowed = rows.view(1, -1) < rows.view(-1, 1) if causal else \
                rows.view(1, -1) != rows.view(-1, 1)
            pattern = torch.zeros(self.width, self.width, dtype=dtype,
                                  device=self.child.device)
            pattern.masked_fill_(~allowed, -math.inf)
            if causal:  # the first child has no sibling to its left
                pattern[0, 0] = 0.0
            return pattern
        return self._derived(('pattern', causal, dtype), make)

    @property
    def num_families(self) -> int:
        return self.child.size(0)

    @property
    def padded(self) -> bool:
        return self.num_pairs != self.num_families * self.width * (self.width - 1)

    def to(self, device) -> 'SizeClass':
        return SizeClass(self.width, self.parent_start, self.child.to(device),
                         self.child_node.to(device), self.weight.to(device),
                         self.log_count.to(device), self.sizes.to(device),
                         self.pair_start, self.num_pairs, self.child_start, self.leaves)

    # ----------------------------------------------------------- derived
    def load_index(self) -> Tensor:
        r"""``[F, B]`` :attr:`child` with the padding of a class of leaves
        pointing to leaf 0 instead of one past the end, for gathering from the
        inputs (padding is masked by :attr:`weight` and :attr:`log_count`)."""
        return self._derived('load', lambda: torch.where(self.valid(), self.child, 0)
                             if self.leaves else self.child)

    def valid(self) -> Tensor:
        r"""``[F, B]`` bool: a real child, not padding."""
        return self._derived('valid', lambda: self.weight > 0)

    def weight_as(self, dtype) -> Tensor:
        r"""``[F, B]`` :math:`n(C)/n(P)` in :obj:`dtype`."""
        return self._derived(('weight', dtype), lambda: self.weight.to(dtype))

    def log_count_as(self, dtype) -> Tensor:
        r"""``[F, B]`` :math:`\log n(C)` in :obj:`dtype` (:math:`-\infty` at
        padding)."""
        return self._derived(('log_count', dtype), lambda: self.log_count.to(dtype))

    def score_mask(self, causal: bool, dtype, f0: int, f1: int, i0: int, i1: int):
        r"""The additive score terms of families ``f0:f1``, rows ``i0:i1``:
        :math:`\log n(B)` where row :math:`A` may attend column :math:`B` (a
        sibling: another real child, left of :math:`A` when causal),
        :math:`-\infty` elsewhere; a row with nothing to attend (the first
        child under ``causal``) gets a finite dummy entry on its diagonal so
        that its softmax stays finite (its :math:`\eta = +\infty` is set by
        :meth:`empty_rows`).  One ``[F, rows, B]`` tensor for small classes,
        else the pair ``(log_count [F, 1, B], pattern [rows, B])`` to add."""
        if self._small:
            mask = self._derived(('mask', causal, dtype), lambda: self.log_count_as(dtype)
                                 .unsqueeze(1) + self._pattern(causal, dtype))
            return (mask[f0:f1, i0:i1], )
        return (self.log_count_as(dtype)[f0:f1].unsqueeze(1),
                self._pattern(causal, dtype)[i0:i1])

    def blocked(self, causal: bool, f0: int, f1: int, i0: int, i1: int) -> Tensor:
        r"""``[F, rows, B]`` (or broadcastable to it) bool: where a row may
        not attend a column (itself, padding, right of it when causal): the
        :math:`-\infty` entries of :meth:`score_mask`."""
        if self._small:
            mask = self._derived(('blocked', causal), lambda: torch.isneginf(
                self.log_count.unsqueeze(1) + self._pattern(causal, torch.float64)))
            return mask[f0:f1, i0:i1]
        pattern = self._derived(('blocked_pattern', causal),
                                lambda: torch.isneginf(self._pattern(causal, torch.float64)))
        return torch.isneginf(self.log_count[f0:f1]).unsqueeze(1) | pattern[i0:i1]

    def empty_rows(self, causal: bool) -> Optional[Tensor]:
        r"""``[B]`` rows with no sibling to attend (only the first child under
        ``causal``; after collapsing, every family has two or more children),
        or :obj:`None`."""
        if not causal:
            return None

        def make():
            empty = torch.zeros(self.width, dtype=torch.bool, device=self.child.device)
            empty[0] = True
            return empty
        return self._derived('empty', make)

    def pair_ids(self) -> Tensor:
        r"""``[F, B, B]`` the index of each ordered sibling pair (row
        attends column) in :attr:`Layout.sibling_index`, ``-1`` on the
        diagonal and at padding; pairs are numbered family by family, row-major
        inside a family.  Kept for small classes, computed for large ones."""
        make = lambda: _pair_ids(self.sizes, self.width, self.pair_start)  # noqa: E731
        return self._derived('pairs', make) if self._small else make()

    def pair_gather(self, num_pairs: int) -> Tensor:
        r"""``[F, B, B]`` :meth:`pair_ids` with the diagonal and the padding
        pointing to :obj:`num_pairs` (an appended zero entry)."""
        ids = self.pair_ids()
        return torch.where(ids >= 0, ids, num_pairs)


def _pair_ids(sizes: Tensor, width: int, start: int) -> Tensor:
    device = sizes.device
    col = torch.arange(width, device=device)
    valid = col.view(1, -1) < sizes.view(-1, 1)                      # [F, B]
    pair_valid = valid.unsqueeze(2) & valid.unsqueeze(1) & \
        (col.view(-1, 1) != col.view(1, -1))
    flat = pair_valid.reshape(-1)
    ids = torch.full((flat.numel(), ), -1, dtype=torch.long, device=device)
    ids[flat] = start + torch.arange(int(flat.sum()), device=device)
    return ids.view(-1, width, width)


@dataclass
class Layout:
    r"""The compiled forest (see the module docstring and
    :mod:`hsa_geo.engine.builder`).

    Attributes:
        num_leaves (int): Leaves.
        num_rows (int): Rows of the node buffer: the lifted leaves, the
            internal nodes, the zero row.
        levels (List[List[SizeClass]]): Per level (height 1, 2, ...), its
            size classes; the first level's classes are classes of leaves.
        lifted (LongTensor): The leaves that own the first rows of the node
            buffer (their parent is above the first level).
        root_rows (LongTensor): Node-buffer rows of the internal roots.
        root_leaves (LongTensor): Leaves that are trees of their own.
        row_top (LongTensor): ``[num_rows - 1]`` the user node heading each
            node-buffer row (its chain's top).
        leaf_top (LongTensor): ``[num_leaves]`` the same for the leaves.
        num_pairs (int): Ordered sibling pairs of all families.
    """
    num_leaves: int
    num_rows: int
    levels: List[List[SizeClass]]
    lifted: Tensor
    root_rows: Tensor
    root_leaves: Tensor
    row_top: Tensor
    leaf_top: Tensor
    num_pairs: int
    # forms derived from the layout on first use (the families of the fused
    # CPU kernels), never traced: see SizeClass.derived
    cache: Dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def zero_row(self) -> int:
        return self.num_rows - 1

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def num_lifted(self) -> int:
        return self.lifted.numel()

    def to(self, device) -> 'Layout':
        return Layout(self.num_leaves, self.num_rows,
                      [[c.to(device) for c in level] for level in self.levels],
                      self.lifted.to(device), self.root_rows.to(device),
                      self.root_leaves.to(device), self.row_top.to(device),
                      self.leaf_top.to(device), self.num_pairs)

    def heading_nodes(self, c: SizeClass, rows: Tensor) -> Tensor:
        r"""The user nodes heading the children :obj:`rows` (entries of
        ``c.child``, padding excluded by the caller)."""
        return self.leaf_top[rows] if c.leaves else self.row_top[rows]

    def classes(self):
        r"""Every size class, bottom level first."""
        for level in self.levels:
            yield from level

    # ------------------------------------------------------- pair order
    def sibling_index(self) -> Tensor:
        r"""``[2, num_pairs]`` the ordered sibling pairs as user node ids, in
        the engine's pair order (level, class, family, row-major)."""
        out = []
        for c in self.classes():
            ids = c.pair_ids()
            keep = ids >= 0
            b = c.width
            src = c.child_node.unsqueeze(2).expand(-1, b, b)[keep]
            dst = c.child_node.unsqueeze(1).expand(-1, b, b)[keep]
            out.append(torch.stack([src, dst]))
        if not out:
            return torch.empty(2, 0, dtype=torch.long, device=self.root_rows.device)
        return torch.cat(out, dim=1)
