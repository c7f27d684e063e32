r"""The layout builder: a parent vector compiled into a
:class:`~hsa_geo.engine.layout.Layout` (unary chains collapsed, nodes graded
by height, families grouped into a few padded size classes per level), once
per batch, vectorised: no Python loop over nodes or families.

**Collapsing unary chains.**  A node with a single child has no sibling, so it
keeps all of its attention (:math:`\mu = 1`), passes its parent's mass on
unchanged, and has the statistics and the energy :math:`\phi` of that child.
It is therefore exactly equivalent to its child: every maximal chain of
single-child nodes is compiled into one node, whose content (statistics,
:math:`\phi`) is the chain's bottom node and whose place in its family
(position vector, sibling pairs, causal order) is the chain's top node.  After
collapsing, every internal node has at least two children, so the number of
levels is the number of levels that have choices to make.

(The rows of the node buffer are described in :mod:`hsa_geo.engine.layout`.)

**Size classes.**  The families of a level are sorted by size and cut into a
few padded size classes by the cost model of
:mod:`hsa_geo.engine.size_classes`.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor

from hsa_geo.engine.depth import node_depth
from hsa_geo.engine.layout import Layout, SizeClass
from hsa_geo.engine.size_classes import size_classes

__all__ = ['build_layout']

def build_layout(parent: Tensor, num_leaves: int) -> Layout:
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

    roots = is_root.nonzero().view(-1)
    root_rows = row[roots[roots >= num_leaves]]
    root_leaves = roots[roots < num_leaves]
    row_top = torch.empty(num_rows - 1, dtype=torch.long)
    buffered = (row >= 0).nonzero().view(-1)
    row_top[row[buffered]] = top[buffered]
    return Layout(num_leaves, num_rows, levels, lifted, root_rows, root_leaves, row_top,
               top[:num_leaves].clone(), pair_offset)


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
    depth, _ = node_depth(parent)   # the parent vector was checked: no cycles
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
