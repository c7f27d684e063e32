r"""The cost model that cuts a level's families into padded size classes.

**Size classes.**  The families of a level are sorted by size and cut into at
most :data:`MAX_CLASSES` classes; each class is one dense block ``[F, B]`` of
child rows, padded to its widest family.  The cut minimises a cost model:
a fixed cost per class (its kernel launches) plus the padded score entries
:math:`F B^2` (:func:`size_classes`), so a level costs a constant number of
kernels however many distinct family sizes it has.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

__all__ = ['size_classes', 'MAX_CLASSES', 'CLASS_COST']

#: At most this many padded size classes per level.
MAX_CLASSES = 3
#: The cost of one more class in padded score entries per head: about the
#: work of the two dozen kernels a class launches, measured on a 2-core CPU
#: (a launch ~5 us, a score entry ~2.5 ns with d = 32).
CLASS_COST = 1 << 12


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
