r"""Hierarchies over padded batches of token sequences, for zero-shot HSA.

A padded batch ``[batch, length]`` with a validity mask becomes one forest: one
tree per sequence, whose leaves are the sequence's valid tokens in order, all
sequences' leaves concatenated batch-major (the order of ``x[mask]``).  Padding
is not part of the forest, so it never attends and is never attended to.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hsa_geo.hierarchy import Hierarchy
from hsa_geo.transforms.sequence import window_parent

__all__ = ['sequence_parent', 'token_forest', 'HierarchySpec', 'check_hierarchy_spec',
           'TokenForestCache']

#: what ``hierarchy=`` may be: bottom-up branching factors, ``'flat'``, a
#: callable returning a :class:`Hierarchy`, or a :class:`Hierarchy`
HierarchySpec = Union[Tuple[int, ...], str, Callable, Hierarchy]


def check_hierarchy_spec(hierarchy) -> HierarchySpec:
    if isinstance(hierarchy, Hierarchy) or callable(hierarchy):
        return hierarchy
    if isinstance(hierarchy, str):
        if hierarchy != 'flat':
            raise ValueError(f"'hierarchy' as a string must be 'flat', got {hierarchy!r}")
        return hierarchy
    if isinstance(hierarchy, (tuple, list)) and hierarchy and all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 2 for b in hierarchy):
        return tuple(hierarchy)
    raise ValueError(f"'hierarchy' must be a tuple of bottom-up branching factors >= 2 "
                     f"such as (2, 4, 8, 16), 'flat', a callable or a Hierarchy; got "
                     f"{hierarchy!r}")


def sequence_parent(length: int, branching: Union[Sequence[int], str],
                    special_ends: bool = False) -> Tensor:
    r"""Parent vector of one sequence of :obj:`length` tokens (leaves
    ``0..length-1``, internal nodes after them, the root last).

    ``branching='flat'``: every token is a child of the root.  Otherwise
    hopping windows (:func:`~hsa_geo.transforms.window_parent`): windows of
    ``branching[0]`` consecutive tokens, windows of ``branching[1]`` of those,
    and so on, everything left under one root; a length that is not a product
    of the factors gives a shorter last window on each level.  With
    :obj:`special_ends` (and at least 3 tokens) the first and last token (e.g.
    ``[CLS]`` and ``[SEP]``, ``<s>`` and ``</s>``) are not windowed: they are
    children of the root beside the top windows of the other tokens.
    """
    if length < 1:
        raise ValueError(f"'length' must be at least 1, got {length}")
    if branching == 'flat' or length == 1:
        return torch.cat([torch.full((length, ), length), torch.tensor([-1])])
    if not special_ends or length < 3:
        return window_parent(length, branching)[0]
    inner = window_parent(length - 2, branching)[0]
    m = length - 2
    num_internal = inner.numel() - m
    root = length + num_internal - 1
    # inner leaves j -> tokens j + 1; inner internal node x -> length + (x - m)
    remapped = torch.where(inner >= 0, inner - m + length, inner)
    parent = torch.empty(length + num_internal, dtype=torch.long)
    parent[1:length - 1] = remapped[:m]
    parent[length:] = remapped[m:]
    parent[0] = parent[length - 1] = root
    return parent


def token_forest(mask: Tensor, branching: Union[Sequence[int], str],
                 special_ends: bool = False) -> Hierarchy:
    r"""The forest of a padded batch: :func:`sequence_parent` for each row of
    the boolean :obj:`mask` ``[batch, length]`` (its valid tokens, in order),
    compiled into one :class:`~hsa_geo.Hierarchy` whose leaves are
    ``x[mask]``.  Rows without valid tokens get no tree."""
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"'mask' must be a boolean [batch, length] tensor, got "
                         f"{tuple(mask.shape)} {mask.dtype}")
    lengths = mask.sum(dim=1).tolist()
    num_leaves = sum(lengths)
    leaf_parts, internal_parts = [], []
    leaf_offset, internal_offset = 0, num_leaves
    for n in lengths:
        if n == 0:
            continue
        parent = sequence_parent(n, branching, special_ends)
        # every parent is an internal node (id >= n) or -1 (the root)
        shift = torch.where(parent >= 0, parent - n + internal_offset, parent)
        leaf_parts.append(shift[:n])
        internal_parts.append(shift[n:])
        leaf_offset += n
        internal_offset += parent.numel() - n
    if num_leaves == 0:
        raise ValueError("'mask' has no valid token")
    parent = torch.cat(leaf_parts + internal_parts)
    return Hierarchy.from_parent(parent, num_leaves)


class TokenForestCache:
    r"""Compiles :func:`token_forest` once per distinct mask (a few recent
    ones kept): every injected layer of one forward pass, and batches padded
    the same way, reuse the compiled hierarchy."""
    def __init__(self, size: int = 32):
        self.size = size
        self._cache: 'OrderedDict[tuple, Hierarchy]' = OrderedDict()

    def get(self, mask: Tensor, branching, special_ends: bool,
            device: Optional[torch.device] = None) -> Hierarchy:
        mask_cpu = mask.detach().to('cpu', torch.bool)
        key = (tuple(mask_cpu.shape), mask_cpu.numpy().tobytes(), branching, special_ends,
               str(device))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        hierarchy = token_forest(mask_cpu, branching, special_ends)
        if device is not None:
            hierarchy = hierarchy.to(device)
        self._cache[key] = hierarchy
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return hierarchy
