r"""What a forward pass hands out besides its output, kept in one explicit
object instead of attributes set on the engine: the attention-dropout masks it
drew (the backward pass needs the same ones) and, when asked for, the block
weights :math:`\delta(A, B)` of every sibling pair (:func:`hsa_geo.hsa_weights`).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['Recorder']

Key = Tuple[int, int, int]   # (class number, first family, first row)


class Recorder:
    r"""Dropout masks and, optionally, pair weights of one forward pass.

    Args:
        dropout (float): Probability of dropping a block weight.
        pair_weights (Tensor, optional): ``[num_pairs, heads]`` filled with
            :math:`\delta(A, B)` by the forward pass when given.
    """
    def __init__(self, dropout: float = 0.0, pair_weights: Optional[Tensor] = None):
        self.dropout = dropout
        self.pair_weights = pair_weights
        self.keep: Dict[Key, Tensor] = {}
        self._seed: Optional[int] = None

    def seed(self) -> int:
        r"""The seed of the masks the fused kernels draw in place (one per
        forward call, from torch's generator; the backward pass reads the
        same one), 0 without dropout."""
        if self.dropout <= 0:
            return 0
        if self._seed is None:
            self._seed = int(torch.randint(0, 1 << 31, (1, )))
        return self._seed

    def drop(self, attention: Tensor, key: Key) -> Tensor:
        r""":obj:`attention` with each entry zeroed with probability
        ``dropout`` and the rest scaled by ``1 / (1 - dropout)``; the mask is
        kept for the backward pass."""
        if self.dropout <= 0:
            return attention
        keep = torch.rand_like(attention) >= self.dropout
        scaled = keep.to(attention.dtype).div_(1.0 - self.dropout)
        self.keep[key] = scaled
        return attention * scaled

    def kept(self, key: Key) -> Optional[Tensor]:
        r"""The scaled keep mask drawn for :obj:`key` (``None`` without
        dropout)."""
        return self.keep.get(key)
