r"""Attention FLOPs per layer: softmax attention against HSA."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hsa_geo.zero_shot.tokens import check_hierarchy_spec, sequence_parent

__all__ = ['AttentionFlops', 'attention_flops']


@dataclass(frozen=True)
class AttentionFlops:
    r"""FLOPs of one attention layer on one sequence (a multiply-add is 2)."""
    softmax: int          #: 4 N^2 d (QK^T and AV) + N^2 H (softmax)
    hsa_families: int     #: sum over families of 4 b^2 d + b^2 H
    hsa_linear: int       #: subtree means, top-down accumulation, self scores
    sum_b2: int           #: sum over families of b^2

    @property
    def hsa(self) -> int:
        return self.hsa_families + self.hsa_linear

    @property
    def saved(self) -> float:
        r"""Fraction of the softmax FLOPs HSA saves."""
        return 1.0 - self.hsa / self.softmax


def attention_flops(length: int, width: int, heads: int = 12, hierarchy=(2, 4, 8, 16),
                    special_tokens: bool = False, include_self: bool = False
                    ) -> AttentionFlops:
    r"""Attention FLOPs per layer for one sequence of :obj:`length` tokens and
    model width :obj:`width` (all heads together), softmax against HSA.

    Counted as matrix products, a multiply-add being 2 FLOPs and an
    exponential / normalisation 1 per score and head:

    * softmax attention: :math:`QK^\top` and :math:`AV` cost
      :math:`2N^2d` each, the softmax :math:`N^2H`: :math:`4N^2d + N^2H`
      (the projections, the same for both, are not counted);
    * HSA (Amizadeh et al., Section 4): per family of :math:`b \ge 2`
      siblings (one-child nodes cost nothing), the sibling scores and the
      softmax-weighted value means cost :math:`4b^2d + b^2H`, like a small
      softmax attention; linear in :math:`N`: the mean query, key and value of
      every internal node (:math:`3 \cdot 2d` per child edge), the top-down
      accumulation (:math:`2d` per node) and, with :obj:`include_self`, the
      scores of the leaves with themselves (:math:`2d` per leaf).

    :obj:`hierarchy` and :obj:`special_tokens` are those of
    :func:`hsa_geo.zero_shot.inject` (``'flat'`` or bottom-up window sizes).
    """
    if length < 1 or width < 1 or heads < 1:
        raise ValueError(f"'length', 'width' and 'heads' must be positive, got "
                         f"{length}, {width}, {heads}")
    hierarchy = check_hierarchy_spec(hierarchy)
    if not isinstance(hierarchy, (tuple, str)):
        raise ValueError("'hierarchy' must be 'flat' or a tuple of window sizes here")
    n, d = length, width
    softmax = 4 * n * n * d + n * n * heads
    parent = sequence_parent(length, hierarchy, special_ends=special_tokens)
    children = torch.bincount(parent[parent >= 0], minlength=parent.numel())
    families = children[children >= 2]
    sum_b2 = int((families**2).sum())
    hsa_families = 4 * sum_b2 * d + sum_b2 * heads
    child_edges = int(families.sum())
    hsa_linear = 6 * d * child_edges + 2 * d * parent.numel() + (2 * d * n if include_self
                                                                 else 0)
    return AttentionFlops(softmax, hsa_families, hsa_linear, sum_b2)
