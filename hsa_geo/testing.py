r"""Synthetic forests for tests and benchmarks."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ['random_forest', 'regular_tree', 'random_ragged_tree', 'flat_tree', 'median_time']


def _relabel(parent_of: list, is_leaf: list, rng: Optional[np.random.Generator],
             shuffle: bool) -> Tuple[Tensor, int]:
    r"""Numbers leaves first, then internal nodes, optionally shuffled."""
    leaves = [i for i, leaf in enumerate(is_leaf) if leaf]
    internal = [i for i, leaf in enumerate(is_leaf) if not leaf]
    if shuffle and rng is not None:
        rng.shuffle(leaves)
        rng.shuffle(internal)
    new_id = {old: new for new, old in enumerate(leaves + internal)}
    parent = torch.full((len(parent_of), ), -1, dtype=torch.long)
    for old, p in enumerate(parent_of):
        if p >= 0:
            parent[new_id[old]] = new_id[p]
    return parent, len(leaves)


def random_forest(seed: int, num_roots: int = 1, max_depth: int = 3,
                  max_branching: int = 4, leaf_prob: float = 0.3,
                  shuffle: bool = True) -> Tuple[Tensor, int]:
    r"""A random ragged forest: mixed depths, unary chains, families of one,
    single-leaf trees.  Returns ``(parent, num_leaves)`` for
    :meth:`hsa_geo.Hierarchy.from_parent`."""
    rng = np.random.default_rng(seed)
    parent_of, is_leaf = [], []

    def grow(p: int, depth: int):
        node = len(parent_of)
        parent_of.append(p)
        if depth >= max_depth or (depth > 0 and rng.random() < leaf_prob):
            is_leaf.append(True)
            return
        is_leaf.append(False)
        for _ in range(int(rng.integers(1, max_branching + 1))):
            grow(node, depth + 1)

    for _ in range(num_roots):
        grow(-1, 0 if rng.random() < 0.9 else max_depth)  # a few lone leaves
    return _relabel(parent_of, is_leaf, rng, shuffle)


def regular_tree(num_leaves: int, branching: Sequence[int]) -> Tuple[Tensor, int]:
    r"""A tree over ``num_leaves`` leaves grouped bottom-up by the given
    branching factors (e.g. ``(16, 16, 16)``); groups at the end may be
    smaller.  Leaves keep their order; nodes of each level follow the leaves.
    Above the last factor, everything joins one root."""
    parents, offset, count = [], 0, num_leaves
    for b in branching:
        groups = (count + b - 1) // b
        if groups <= 1:
            break
        parents.append(offset + count + torch.arange(count) // b)
        offset += count
        count = groups
    parents.append(torch.full((count, ), offset + count, dtype=torch.long)
                   if count > 1 else torch.full((count, ), -1, dtype=torch.long))
    if count > 1:
        parents.append(torch.tensor([-1]))
    return torch.cat(parents), num_leaves


def random_ragged_tree(num_leaves: int, low: int = 2, high: int = 32,
                       seed: int = 0) -> Tuple[Tensor, int]:
    r"""A tree whose every family has a uniformly random size in
    ``[low, high]``, built bottom-up over leaves in order."""
    rng = np.random.default_rng(seed)
    parents, offset, count = [], 0, num_leaves
    while count > high:
        sizes = rng.integers(low, high + 1, size=count // low + 1)
        ends = np.cumsum(sizes)
        groups = int(np.searchsorted(ends, count)) + 1
        group_of = np.repeat(np.arange(groups), sizes[:groups])[:count]
        parents.append(offset + count + torch.from_numpy(group_of).long())
        offset += count
        count = groups
    parents.append(torch.full((count, ), offset + count, dtype=torch.long))
    parents.append(torch.tensor([-1]))
    return torch.cat(parents), num_leaves


def flat_tree(num_leaves: int) -> Tuple[Tensor, int]:
    r"""One root whose children are all the leaves: HSA is softmax
    attention there."""
    parent = torch.full((num_leaves + 1, ), num_leaves, dtype=torch.long)
    parent[-1] = -1
    return parent, num_leaves


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    r"""Median wall time in seconds of :obj:`repeats` calls of :obj:`fn` (after
    one untimed warm-up call), for the benchmark and example scripts."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
