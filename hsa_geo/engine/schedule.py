r"""How a size class is cut into chunks that fit the memory budget.

A chunk is ``(f0, f1, i0, i1)``: families ``f0:f1`` of the class, query rows
``i0:i1`` of each.  Families are whole (``i0 = 0, i1 = width``) unless a single
family's score block ``[heads, width, width]`` exceeds the budget; such a
family is cut by query rows, like FlashAttention, so memory stays
:math:`O(N d)` even for a flat tree of a million leaves.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import torch

__all__ = ['Budget', 'chunks']


class Budget:
    r"""Elements per chunk tensor: on the CPU small enough to stay in cache,
    large enough for efficient batched GEMMs; on a GPU, large."""
    CPU_SCORES = 1 << 20
    CPU_ROWS = 1 << 19
    GPU_SCORES = 1 << 28
    GPU_ROWS = 1 << 27

    def __init__(self, device: torch.device):
        gpu = device.type != 'cpu'
        self.scores = self.GPU_SCORES if gpu else self.CPU_SCORES
        self.rows = self.GPU_ROWS if gpu else self.CPU_ROWS


def chunks(num_families: int, width: int, heads: int, channels: int,
           budget: Budget) -> Iterator[Tuple[int, int, int, int]]:
    r"""The chunks of a class of :obj:`num_families` families of
    :obj:`width`, for :obj:`heads` heads and :obj:`channels` channels per
    row."""
    per_family = heads * width * width
    if per_family <= budget.scores:
        step = max(1, min(budget.scores // per_family,
                          budget.rows // max(1, heads * width * channels)))
        for f0 in range(0, num_families, step):
            yield f0, min(f0 + step, num_families), 0, width
        return
    rows = max(1, budget.scores // (heads * width))
    for f in range(num_families):
        for i0 in range(0, width, rows):
            yield f, f + 1, i0, min(i0 + rows, width)
