r"""Hierarchies over padded batches of token sequences, for zero-shot HSA.

A padded batch ``[batch, length]`` with a validity mask becomes one forest: one
tree per sequence, whose leaves are the sequence's valid tokens in order, all
sequences' leaves concatenated batch-major (the order of ``x[mask]``).  Padding
is not part of the forest, so it never attends and is never attended to.
:class:`SegmentForest` is the forest of sentence pairs whose windows never
straddle the two segments.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hsa_geo.hierarchy import Hierarchy
from hsa_geo.transforms.sequence import window_parent

__all__ = ['sequence_parent', 'token_forest', 'HierarchySpec', 'check_hierarchy_spec',
           'TokenForestCache', 'segment_parent', 'SegmentForest']

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


def segment_parent(special: Tensor, branching: Union[Sequence[int], str]) -> Tensor:
    r"""Parent vector of one sequence whose special tokens are marked by the
    boolean :obj:`special` ``[length]`` (``[CLS]``, every ``[SEP]``): every
    special token is a child of the root, and each segment between them (a
    maximal run of ordinary tokens) is its own subtree under the root,
    windowed by :obj:`branching` inside the segment, so that no window holds
    tokens of two segments.  Leaves ``0..length-1``, internal nodes after
    them, the root last."""
    length = special.numel()
    if length < 1:
        raise ValueError("'special' must mark at least one token")
    parent_of_leaf = torch.empty(length, dtype=torch.long)
    internal: list = []          # parents of the internal nodes, root excluded
    tops: list = []              # (kind, index) of the root's children
    start = 0
    flags = special.tolist()
    while start < length:
        if flags[start]:
            tops.append(('leaf', start))
            start += 1
            continue
        end = start
        while end < length and not flags[end]:
            end += 1
        n = end - start
        if n == 1:
            tops.append(('leaf', start))
        else:
            sub = sequence_parent(n, branching)       # leaves 0..n-1, its root last
            # its internal node x is node length + len(internal) + (x - n) here
            shift = length + len(internal) - n
            parent_of_leaf[start:end] = sub[:n] + shift
            # -2 marks the segment's root, whose parent is the sequence's root
            internal.extend(torch.where(sub[n:] < 0, -2, sub[n:] + shift).tolist())
            tops.append(('node', len(internal) - 1 + length))
        start = end
    root = length + len(internal)
    parent = torch.cat([parent_of_leaf, torch.tensor(internal + [-1], dtype=torch.long)])
    parent[length:root][parent[length:root] == -2] = root
    for _kind, index in tops:
        parent[index] = root
    return parent


class SegmentForest:
    r"""A segment-aware forest for sentence pairs: a callable ``(input_ids,
    mask) -> Hierarchy`` for :func:`~hsa_geo.zero_shot.inject`.  In each
    sequence the first valid token (``[CLS]``) and every separator
    (:obj:`sep_token_id`) are children of the root, and every segment is its
    own windowed subtree (:func:`segment_parent`); plain windows
    (:func:`token_forest`) instead let windows straddle the segments of a
    pair.  Compiled once per distinct batch (a few kept).

    Args:
        branching (tuple or str): Bottom-up window sizes, or ``'flat'``
            (each segment one family).
        sep_token_id (int): The separator token, e.g. ``tokenizer.sep_token_id``.
    """
    def __init__(self, branching: Union[Sequence[int], str], sep_token_id: int,
                 size: int = 32):
        self.branching = check_hierarchy_spec(branching)
        if not isinstance(self.branching, (tuple, str)):
            raise ValueError("'branching' must be window sizes or 'flat'")
        self.sep_token_id = int(sep_token_id)
        self.size = size
        self._cache: 'OrderedDict[tuple, Hierarchy]' = OrderedDict()

    def __call__(self, input_ids: Tensor, mask: Tensor) -> Hierarchy:
        if input_ids is None:
            raise ValueError("SegmentForest needs the model's input_ids")
        ids, valid = input_ids.detach().cpu(), mask.detach().cpu().bool()
        key = (tuple(valid.shape), valid.numpy().tobytes(), ids.numpy().tobytes())
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit.to(mask.device)
        parents, counts = [], []
        for row_ids, row_valid in zip(ids, valid):
            tokens = row_ids[row_valid]
            if tokens.numel() == 0:
                continue
            special = tokens == self.sep_token_id
            special[0] = True                          # [CLS] / <s>
            parents.append(segment_parent(special, self.branching))
            counts.append(tokens.numel())
        hierarchy = _concatenate(parents, counts)
        self._cache[key] = hierarchy
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return hierarchy.to(mask.device)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.branching}, '
                f'sep_token_id={self.sep_token_id})')


def _concatenate(parents, counts) -> Hierarchy:
    r"""One forest from per-sequence parent vectors (leaves first): all
    leaves batch-major, then all internal nodes."""
    num_leaves = sum(counts)
    leaf_parts, internal_parts, offset = [], [], num_leaves
    for parent, n in zip(parents, counts):
        shift = torch.where(parent >= 0, parent - n + offset, parent)
        leaf_parts.append(shift[:n])
        internal_parts.append(shift[n:])
        offset += parent.numel() - n
    return Hierarchy.from_parent(torch.cat(leaf_parts + internal_parts), num_leaves)
