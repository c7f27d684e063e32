r"""The level layout of a forest for the dynamic program: unary chains
collapsed, nodes graded by height, families grouped into a few padded size
classes per level.  Built once per batch (:meth:`Layout.build`, vectorised: no
Python loop over nodes or families), held by :class:`hsa_geo.Hierarchy`.

**Collapsing unary chains.**  A node with a single child has no sibling, so it
keeps all of its attention (:math:`\mu = 1`), passes its parent's mass on
unchanged, and has the statistics and the energy :math:`\phi` of that child.
It is therefore exactly equivalent to its child: every maximal chain of
single-child nodes is compiled into one node, whose content (statistics,
:math:`\phi`) is the chain's bottom node and whose place in its family
(position vector, sibling pairs, causal order) is the chain's top node.  After
collapsing, every internal node has at least two children, so the number of
levels is the number of levels that have choices to make.

**Rows.**  The leaves stay where they are: the classes of the first level
(whose children are all leaves) index the user's ``q``/``k``/``v`` and output
rows directly, so the inputs are never copied or permuted.  The node buffer
holds the rest: first the *lifted* leaves (leaves whose parent is higher up,
e.g. one-token words directly under a sentence once the word is collapsed),
then the internal nodes level by level (level :math:`h` holds the nodes of
height :math:`h`; within a level, class by class and family by family, so the
parents of a class are one contiguous range), then one zero row that padding
points to.

**Size classes.**  The families of a level are sorted by size and cut into at
most :data:`MAX_CLASSES` classes; each class is one dense block ``[F, B]`` of
child rows, padded to its widest family.  The cut minimises a cost model:
a fixed cost per class (its kernel launches) plus the padded score entries
:math:`F B^2` (:func:`size_classes`), so a level costs a constant number of
kernels however many distinct family sizes it has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['SizeClass', 'Layout', 'size_classes', 'MAX_CLASSES', 'CLASS_COST']

#: At most this many padded size classes per level.
MAX_CLASSES = 3
#: Classes of up to this many score entries keep their score masks and pair
#: ids; larger ones build them per chunk (they would cost memory like a level).
MASK_ENTRIES = 1 << 18
#: The cost of one more class in padded score entries per head: about the
#: work of the two dozen kernels a class launches, measured on a 2-core CPU
#: (a launch ~5 us, a score entry ~2.5 ns with d = 32).
CLASS_COST = 1 << 12


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
    # derived tensors, built at construction (never inside a forward pass:
    # a lazily filled cache is a side effect torch.compile cannot trace)
    derived: Dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        real = self.weight > 0
        d = self.derived
        d['valid'] = real
        d['load'] = torch.where(real, self.child, 0) if self.leaves else self.child
        small = self.num_families * self.width * self.width <= MASK_ENTRIES
        rows = torch.arange(self.width, device=self.child.device)
        for dtype in (torch.float32, torch.float64):
            d['weight', dtype] = self.weight.to(dtype)
            d['log_count', dtype] = self.log_count.to(dtype)
            for causal in (False, True):
                allowed = rows.view(1, -1) < rows.view(-1, 1) if causal else \
                    rows.view(1, -1) != rows.view(-1, 1)
                pattern = torch.zeros(self.width, self.width, dtype=dtype,
                                      device=self.child.device)
                pattern.masked_fill_(~allowed, -math.inf)
                if causal:  # the first child has no sibling to its left
                    pattern[0, 0] = 0.0
                d['pattern', causal, dtype] = pattern
                if small:
                    d['mask', causal, dtype] = d['log_count', dtype].unsqueeze(1) + pattern
                if dtype == torch.float64:  # where a score is -inf (the guard sets it)
                    d['blocked_pattern', causal] = torch.isneginf(pattern)
                    if small:
                        d['blocked', causal] = torch.isneginf(d['mask', causal, dtype])
        empty = torch.zeros(self.width, dtype=torch.bool, device=self.child.device)
        empty[0] = True
        d['empty'] = empty
        if small:
            d['pairs'] = _pair_ids(self.sizes, self.width, self.pair_start)

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
        return self.derived['load']

    def valid(self) -> Tensor:
        r"""``[F, B]`` bool: a real child, not padding."""
        return self.derived['valid']

    def weights(self, dtype) -> Tensor:
        r"""``[F, B]`` :math:`n(C)/n(P)` in :obj:`dtype`."""
        return self.derived['weight', dtype]

    def log_counts(self, dtype) -> Tensor:
        r"""``[F, B]`` :math:`\log n(C)` in :obj:`dtype` (:math:`-\infty` at
        padding)."""
        return self.derived['log_count', dtype]

    def score_mask(self, causal: bool, dtype, f0: int, f1: int, i0: int, i1: int):
        r"""The additive score terms of families ``f0:f1``, rows ``i0:i1``:
        :math:`\log n(B)` where row :math:`A` may attend column :math:`B` (a
        sibling: another real child, left of :math:`A` when causal),
        :math:`-\infty` elsewhere; a row with nothing to attend (the first
        child under ``causal``) gets a finite dummy entry on its diagonal so
        that its softmax stays finite (its :math:`\eta = +\infty` is set by
        :meth:`empty_rows`).  One ``[F, rows, B]`` tensor for small classes,
        else the pair ``(log_count [F, 1, B], pattern [rows, B])`` to add."""
        mask = self.derived.get(('mask', causal, dtype))
        if mask is not None:
            return (mask[f0:f1, i0:i1], )
        return (self.derived['log_count', dtype][f0:f1].unsqueeze(1),
                self.derived['pattern', causal, dtype][i0:i1])

    def blocked(self, causal: bool, f0: int, f1: int, i0: int, i1: int) -> Tensor:
        r"""``[F, rows, B]`` (or broadcastable to it) bool: where a row may
        not attend a column (itself, padding, right of it when causal): the
        :math:`-\infty` entries of :meth:`score_mask`."""
        mask = self.derived.get(('blocked', causal))
        if mask is not None:
            return mask[f0:f1, i0:i1]
        return torch.isneginf(self.derived['log_count', torch.float64][f0:f1]).unsqueeze(1) \
            | self.derived['blocked_pattern', causal][i0:i1]

    def empty_rows(self, causal: bool) -> Optional[Tensor]:
        r"""``[B]`` rows with no sibling to attend (only the first child under
        ``causal``; after collapsing, every family has two or more children),
        or :obj:`None`."""
        return self.derived['empty'] if causal else None

    def pair_ids(self) -> Tensor:
        r"""``[F, B, B]`` the index of each ordered sibling pair (row
        attends column) in :attr:`Layout.sibling_index`, ``-1`` on the
        diagonal and at padding; pairs are numbered family by family, row-major
        inside a family.  Kept for small classes, computed for large ones."""
        ids = self.derived.get('pairs')
        return _pair_ids(self.sizes, self.width, self.pair_start) if ids is None else ids

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
    r"""The compiled forest (see the module docstring).

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

    # ------------------------------------------------------------ build
    @classmethod
    def build(cls, parent: Tensor, num_leaves: int) -> 'Layout':
        r"""Compiles a validated parent vector (CPU, int64, leaves first)."""
        num_nodes = parent.numel()
        ids = torch.arange(num_nodes)
        has_parent = parent >= 0
        num_children = torch.bincount(parent[has_parent], minlength=num_nodes)
        unary = num_children == 1
        kids = has_parent.nonzero().view(-1)
        only_child = torch.full((num_nodes, ), -1, dtype=torch.long)
        sole = unary[parent[kids]]
        only_child[parent[kids[sole]]] = kids[sole]
        # the top of each node's unary chain: climb while the parent has one child
        climb = has_parent.clone()
        climb[has_parent] = unary[parent[has_parent]]
        top = _fixpoint(torch.where(climb, parent, ids))
        compiled = ~unary                                # leaves and branching nodes
        cparent = torch.where(compiled, parent[top], -1)  # a branching node, or -1

        leaf_count = _leaf_count(parent, num_leaves)
        height = _compiled_heights(cparent, compiled, num_leaves)
        internal = (compiled & (ids >= num_leaves)).nonzero().view(-1)
        is_root = compiled & (cparent < 0)

        # ---- families (internal compiled nodes) ordered by (height, size, id)
        fam_height = height[internal]
        fam_size = num_children[internal]
        order = _lexsort([internal, fam_size, fam_height])
        families = internal[order]
        fam_height, fam_size = fam_height[order], fam_size[order]
        # lifted leaves: a parent above the first level (height >= 2)
        leaf_ids = torch.arange(num_leaves)
        leaf_parent = cparent[:num_leaves]
        lifted = leaf_ids[(leaf_parent >= 0) & (height[leaf_parent.clamp(min=0)] >= 2)]
        num_lifted = lifted.numel()
        row = torch.full((num_nodes, ), -1, dtype=torch.long)
        row[lifted] = torch.arange(num_lifted)
        row[families] = num_lifted + torch.arange(families.numel())
        num_rows = num_lifted + families.numel() + 1
        zero_row = num_rows - 1
        first_level = 1 if families.numel() == 0 else int(fam_height[0])

        # ---- children of every family, ordered by (family row, heading node)
        members = (compiled & (cparent >= 0)).nonzero().view(-1)
        member_family = row[cparent[members]] - num_lifted          # family position
        member_top = top[members]
        order = _lexsort([member_top, member_family])
        members, member_family = members[order], member_family[order]
        starts = torch.cumsum(fam_size, 0) - fam_size
        rank = torch.arange(members.numel()) - starts[member_family]

        levels: List[List[SizeClass]] = []
        pair_offset = 0
        heights, counts = torch.unique_consecutive(fam_height, return_counts=True)
        level_start = 0
        for level_height, count in zip(heights.tolist(), counts.tolist()):
            lo, hi = level_start, level_start + count
            level_start = hi
            sizes = fam_size[lo:hi]
            leaves = level_height == 1   # every child of a height-1 node is a leaf
            classes = []
            for c_lo, c_hi in size_classes(sizes):
                f_lo, f_hi = lo + c_lo, lo + c_hi
                width = int(fam_size[f_hi - 1])
                num_fam = f_hi - f_lo
                m_lo, m_hi = int(starts[f_lo]), int(starts[f_hi - 1] + fam_size[f_hi - 1])
                fam = member_family[m_lo:m_hi] - f_lo
                slot = rank[m_lo:m_hi]
                child_nodes = members[m_lo:m_hi]
                if leaves:
                    child = torch.full((num_fam, width), num_leaves, dtype=torch.long)
                    child[fam, slot] = child_nodes
                else:
                    child = torch.full((num_fam, width), zero_row, dtype=torch.long)
                    child[fam, slot] = row[child_nodes]
                heading = torch.zeros((num_fam, width), dtype=torch.long)
                heading[fam, slot] = top[child_nodes]
                counts_here = leaf_count[child_nodes].double()
                weight = torch.zeros((num_fam, width), dtype=torch.float64)
                weight[fam, slot] = counts_here / leaf_count[families[f_lo:f_hi]][fam].double()
                log_count = torch.full((num_fam, width), -math.inf, dtype=torch.float64)
                log_count[fam, slot] = counts_here.log()
                class_sizes = fam_size[f_lo:f_hi].clone()
                pairs = int((class_sizes * (class_sizes - 1)).sum())
                flat = child.view(-1)
                first = int(flat[0])
                in_order = bool(torch.equal(flat, torch.arange(first, first + flat.numel()))) \
                    and int(flat[-1]) < (num_leaves if leaves else zero_row)
                classes.append(SizeClass(width, num_lifted + f_lo, child, heading, weight,
                                         log_count, class_sizes, pair_offset, pairs,
                                         first if in_order else None, leaves))
                pair_offset += pairs
            levels.append(classes)
        del first_level

        roots = is_root.nonzero().view(-1)
        root_rows = row[roots[roots >= num_leaves]]
        root_leaves = roots[roots < num_leaves]
        row_top = torch.empty(num_rows - 1, dtype=torch.long)
        buffered = (row >= 0).nonzero().view(-1)
        row_top[row[buffered]] = top[buffered]
        return cls(num_leaves, num_rows, levels, lifted, root_rows, root_leaves, row_top,
                   top[:num_leaves].clone(), pair_offset)

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


def size_classes(sizes: Tensor, max_classes: int = MAX_CLASSES,
                 class_cost: int = CLASS_COST) -> List[Tuple[int, int]]:
    r"""Cuts families sorted by size into at most :obj:`max_classes`
    contiguous ranges minimising ``class_cost * classes + sum F_c * B_c^2``
    (:math:`B_c` the largest size of the range), by dynamic programming over
    the distinct sizes.  Returns ``[(start, end), ...]`` family ranges."""
    values, counts = torch.unique_consecutive(sizes, return_counts=True)
    values, counts = values.tolist(), counts.tolist()
    num = len(values)
    ends = [0]
    for c in counts:
        ends.append(ends[-1] + c)
    classes = min(max_classes, num)
    inf = float('inf')
    # best[k][j]: cost of the first j distinct sizes in k classes
    best = [[inf] * (num + 1) for _ in range(classes + 1)]
    cut = [[0] * (num + 1) for _ in range(classes + 1)]
    best[0][0] = 0.0
    for k in range(1, classes + 1):
        for j in range(1, num + 1):
            width = values[j - 1]
            for i in range(k - 1, j):
                if best[k - 1][i] == inf:
                    continue
                cost = best[k - 1][i] + class_cost + (ends[j] - ends[i]) * width * width
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, classes + 1), key=lambda c: best[c][num])
    bounds, j = [], num
    while k > 0:
        i = cut[k][j]
        bounds.append((ends[i], ends[j]))
        j, k = i, k - 1
    return bounds[::-1]


def _fixpoint(pointer: Tensor) -> Tensor:
    r"""Follows ``pointer`` to its fixed points by pointer jumping (the input
    is acyclic apart from self-loops): ``O(N log depth)``."""
    while True:
        nxt = pointer[pointer]
        if torch.equal(nxt, pointer):
            return pointer
        pointer = nxt


def _lexsort(keys: List[Tensor]) -> Tensor:
    r"""Indices sorting by the last key, then the one before, ... (stable)."""
    order = torch.argsort(keys[0], stable=True)
    for key in keys[1:]:
        order = order[torch.argsort(key[order], stable=True)]
    return order


def _depth_order(parent: Tensor) -> Tuple[Tensor, List[int]]:
    r"""Nodes by decreasing depth, with the count per depth (deepest first)."""
    num = parent.numel()
    sentinel = num
    jump = torch.cat([torch.where(parent < 0, sentinel, parent), torch.tensor([sentinel])])
    dist = torch.cat([(parent >= 0).long(), torch.zeros(1, dtype=torch.long)])
    while True:
        nxt = jump[jump]
        dist = dist + dist[jump]
        if torch.equal(nxt, jump):
            break
        jump = nxt
    depth = dist[:num]
    order = torch.argsort(depth, descending=True, stable=True)
    counts = torch.bincount(depth, minlength=int(depth.max()) + 1 if num else 1).flip(0)
    return order, counts.tolist()


def _leaf_count(parent: Tensor, num_leaves: int) -> Tensor:
    r""":math:`n(A)` of every user node, bottom-up by depth."""
    count = torch.zeros(parent.numel(), dtype=torch.long)
    count[:num_leaves] = 1
    order, per_depth = _depth_order(parent)
    start = 0
    for size in per_depth:
        nodes = order[start:start + size]
        start += size
        nodes = nodes[parent[nodes] >= 0]
        if nodes.numel():
            count.index_add_(0, parent[nodes], count[nodes])
    return count


def _compiled_heights(cparent: Tensor, compiled: Tensor, num_leaves: int) -> Tensor:
    r"""Height of every compiled node in the collapsed forest (leaves 0)."""
    masked = torch.where(compiled, cparent, -1)
    height = torch.zeros_like(cparent)
    order, per_depth = _depth_order(masked)
    start = 0
    for size in per_depth:
        nodes = order[start:start + size]
        start += size
        nodes = nodes[(masked[nodes] >= 0)]
        if nodes.numel():
            height.scatter_reduce_(0, masked[nodes], height[nodes] + 1, reduce='amax')
    return height
