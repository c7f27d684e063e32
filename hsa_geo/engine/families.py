r"""The compiled forest as families in CSR form, for the fused CPU kernels
(:mod:`hsa_geo.engine.numba_kernels`): no padding, every family's children
one contiguous range of the child arrays.

**Rows.**  A child is named by a *ref*: ``ref < L`` is leaf ``ref`` (read
straight from the user's ``q``, ``k``, ``v``), ``ref >= L`` is internal node
``ref - L`` (a row of the kernels' node arrays, ``[num_internal, heads,
.]``).  Lifted leaves need no copy: a family simply names the leaf.

**Order.**  Families level by level, bottom up (``level_ptr``), so that a
family's children are complete when the family is reached, and within a
level in the padded layout's order (class by class), which fixes the pair
numbering: family ``f`` owns the ordered sibling pairs
``pair[f] .. pair[f] + b (b - 1) - 1``, row-major with the diagonal left
out, exactly the pairs of :attr:`Layout.sibling_index`.

They are built straight from a parent vector by one compiled pass
(:func:`families_from_parent`, with numba), or from a padded layout
(:func:`families_of`, cached on it); both give the same families.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor

from hsa_geo.engine.layout import Layout

__all__ = ['Families', 'families_of', 'families_from_parent']


@dataclass(frozen=True)
class Families:
    r"""The families of a compiled forest (see the module docstring).

    Attributes:
        num_leaves (int): Leaves :math:`L`.
        num_internal (int): Internal (compiled) nodes.
        num_pairs (int): Ordered sibling pairs.
        level_ptr (LongTensor): ``[levels + 1]`` family ranges per level.
        parent (LongTensor): ``[F]`` each family's internal node.
        child_ptr (LongTensor): ``[F + 1]`` child ranges per family.
        pair_ptr (LongTensor): ``[F]`` each family's first pair.
        ref (LongTensor): ``[C]`` each child's ref (leaf or internal node).
        node (LongTensor): ``[C]`` the user node heading each child (its
            position vector, its place among its siblings).
        weight (Tensor): ``[C]`` float64 :math:`n(C) / n(P)`.
        log_count (Tensor): ``[C]`` float64 :math:`\log n(C)`.
        root_nodes (LongTensor): Internal nodes that are roots.
        root_leaves (LongTensor): Leaves that are trees of their own.
        max_width (int): The widest family.
    """
    num_leaves: int
    num_internal: int
    num_pairs: int
    level_ptr: Tensor
    parent: Tensor
    child_ptr: Tensor
    pair_ptr: Tensor
    ref: Tensor
    node: Tensor
    weight: Tensor
    log_count: Tensor
    root_nodes: Tensor
    root_leaves: Tensor
    max_width: int
    # forms derived on first use (the kernels' numpy views), never traced
    cache: Dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_levels(self) -> int:
        return self.level_ptr.numel() - 1

    @property
    def num_families(self) -> int:
        return self.parent.numel()


def families_of(layout: Layout) -> Families:
    r"""The families of a layout (built once, cached on it)."""
    found = layout.cache.get('families')
    if found is None:
        found = layout.cache['families'] = _build(layout)
    return found


def families_from_parent(parent: Tensor, num_leaves: int) -> Families:
    r"""The families of a validated parent vector (CPU, int64), compiled in
    one pass by numba, without the padded layout: what a batch needs when the
    fused CPU kernels run it.  Needs numba."""
    from hsa_geo.engine._numba_builder import build_families
    return from_arrays(build_families(parent.numpy(), int(num_leaves)), num_leaves)


def from_arrays(built, num_leaves: int) -> Families:
    r"""Families from the numpy arrays of the numba builder
    (:mod:`hsa_geo.engine._numba_builder`)."""
    (num_fam, pairs, width, *arrays) = built
    (level_ptr, fam_parent, child_ptr, pair_ptr, ref, node, weight, log_count, root_nodes,
     root_leaves) = (torch.from_numpy(a) for a in arrays)
    return Families(int(num_leaves), int(num_fam), int(pairs), level_ptr, fam_parent,
                    child_ptr, pair_ptr, ref, node, weight, log_count, root_nodes,
                    root_leaves, int(width))


def _build(layout: Layout) -> Families:
    device = layout.root_rows.device
    num_leaves, lifted = layout.num_leaves, layout.num_lifted
    parents: List[Tensor] = []
    sizes: List[Tensor] = []
    pairs: List[Tensor] = []
    refs: List[Tensor] = []
    nodes: List[Tensor] = []
    weights: List[Tensor] = []
    logs: List[Tensor] = []
    per_level = [0]
    for level in layout.levels:
        count = 0
        for c in level:
            valid = c.valid()
            num = c.num_families
            parents.append(torch.arange(num, device=device) + (c.parent_start - lifted))
            sizes.append(c.sizes)
            fam_pairs = c.sizes * (c.sizes - 1)
            pairs.append(torch.cumsum(fam_pairs, 0) - fam_pairs + c.pair_start)
            child = c.child[valid]
            if c.leaves:
                refs.append(child)
            elif lifted:
                refs.append(torch.where(child < lifted, layout.lifted[child.clamp(max=lifted - 1)],
                                        child - lifted + num_leaves))
            else:
                refs.append(child + num_leaves)
            nodes.append(c.child_node[valid])
            weights.append(c.weight[valid])
            logs.append(c.log_count[valid])
            count += num
        per_level.append(per_level[-1] + count)
    long = dict(dtype=torch.long, device=device)
    cat = lambda xs, **kw: torch.cat(xs) if xs else torch.empty(0, **kw)  # noqa: E731
    size = cat(sizes, **long)
    child_ptr = torch.zeros(size.numel() + 1, **long)
    torch.cumsum(size, 0, out=child_ptr[1:])
    return Families(num_leaves, layout.num_rows - 1 - lifted, layout.num_pairs,
                    torch.tensor(per_level, **long), cat(parents, **long), child_ptr,
                    cat(pairs, **long), cat(refs, **long), cat(nodes, **long),
                    cat(weights, dtype=torch.float64, device=device),
                    cat(logs, dtype=torch.float64, device=device),
                    layout.root_rows - lifted, layout.root_leaves.clone(),
                    int(size.max()) if size.numel() else 0)
