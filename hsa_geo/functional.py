r"""The HSA dynamic program: exact Hierarchical Self-Attention in time linear in
the number of leaves.

Amizadeh et al., `"Hierarchical Self-Attention: Generalizing Neural Attention
Mechanics to Multi-Scale Problems" <https://arxiv.org/abs/2509.15448>`_,
NeurIPS 2025, Algorithm 3 with the two corrections written out in
``docs/math.md`` (the project's account of the mathematics).

Bottom-up, level by level, every family of siblings :math:`A, B` gets

.. math::
    s(A, B) &= \epsilon(A) \cdot \epsilon(B)
        + \rho_q(A) \cdot \rho_k(B) / \sqrt{d} + b(A, B) \\
    \eta(A) &= -\log \sum_{B \in \mathrm{sib}(A)} n(B) \, e^{s(A, B)} \\
    \theta(A) &= \sum_{B \in \mathrm{sib}(A)} n(B) \, e^{s(A, B) + \eta(A)}
        \rho_v(B) \\
    \phi(P) &= -\sum_{C \in \mathrm{chd}(P)} \frac{n(C)}{n(P)}
        \log\left(e^{-\phi(C)} + e^{-\eta(C)}\right)

and top-down, with :math:`\mu(C) = \sigma(\eta(C) - \phi(C))`, the mass
:math:`m(\text{root}) = 1` (``docs/math.md``, section 4) and
:math:`\text{acc}(\text{root}) = 0`,

.. math::
    \text{acc}(C) &= \text{acc}(P) + m(P) (1 - \mu(C)) \, \theta(C) \\
    m(C) &= m(P) \, \mu(C)

so that :math:`\text{out}_i = \text{acc}(i)` (plus :math:`m(i) v_i` with
``include_self``).

Implementation notes:

* Everything that can be infinite (:math:`\phi = +\infty` of single-leaf
  subtrees, :math:`\eta = +\infty` of nodes without siblings) is known from the
  structure alone, so it is handled by masks and never enters the arithmetic.
* Families are processed in cache-sized chunks (dense ``[F, heads, b, b]``
  score blocks); very wide families are split by query rows, like
  FlashAttention.  The backward pass is written by hand: it saves only
  per-node statistics (:math:`\eta`, :math:`\mu`, :math:`m`, :math:`\theta`)
  and recomputes the score blocks, so memory stays :math:`O(N d)`.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from hsa_geo.attention_inputs import check_options, result_dtype
from hsa_geo.flat_families import FlatFamilies
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike
from hsa_geo.lone_leaves import LoneLeaves

__all__ = ['hsa', 'LoneLeaves', 'FlatFamilies', 'check_options', 'result_dtype']


def hsa(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
        pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
        include_self: bool = False, causal: bool = False,
        scale: Optional[float] = None, dropout: float = 0.0) -> Tensor:
    r"""Hierarchical Self-Attention over the leaves of a forest.

    Computes :math:`\mathrm{out}_i = \sum_j \hat\theta_{ij} v_j` where
    :math:`\hat\theta` is the HSA attention matrix (the row-stochastic matrix,
    constant on the hierarchy's blocks, closest in KL to softmax attention)
    without ever forming it: :math:`O(\sum_\text{families} b^2 d)` time and
    :math:`O(N d)` memory.

    Args:
        q (Tensor): Queries of the leaves, ``[num_leaves, heads, d]``.
        k (Tensor): Keys, ``[num_leaves, heads, d]``.
        v (Tensor): Values, ``[num_leaves, heads, d_v]``.
        hierarchy (Hierarchy): The compiled forest; roots never interact.
        pos (Tensor, optional): Position vectors of every node, shared by the
            heads ``[num_nodes, c]`` or per head ``[num_nodes, heads, c]``; the
            sibling score adds :math:`\epsilon(A) \cdot \epsilon(B)`.
            (default: :obj:`None`)
        bias (Tensor, optional): An additive score per ordered sibling pair,
            ``[num_pairs]`` or ``[num_pairs, heads]``, aligned with
            :attr:`Hierarchy.sibling_index`. (default: :obj:`None`)
        include_self (bool, optional): Let a leaf attend to itself as well
            (then a flat tree gives standard softmax attention with the
            diagonal). (default: :obj:`False`)
        causal (bool, optional): Siblings attend only to siblings of smaller
            node index.  Without :obj:`include_self` the first leaf of every
            subtree has nothing inside it to attend to, so the block constraint
            sends the whole subtree's attention outside it; use both together
            for autoregressive models. (default: :obj:`False`)
        scale (float, optional): Score scale, :math:`1/\sqrt{d}` if
            :obj:`None`.
        dropout (float, optional): Dropout probability on the attention
            weights between siblings, i.e. on the block weights
            :math:`\delta(A, B)`: each is zeroed with this probability (and the
            rest scaled by :math:`1/(1-p)`) for all leaves of the block at once;
            the kept shares :math:`\mu` are not dropped.  Pass it only in
            training. (default: :obj:`0.0`)

    Returns:
        Tensor ``[num_leaves, heads, d_v]`` in the dtype of :obj:`v`, or
        under :func:`torch.autocast` in the autocast dtype as
        ``scaled_dot_product_attention`` returns it (float16/bfloat16 are
        computed in float32 inside, forward and backward).  A leaf with nothing
        to attend to gets a zero row.  Differentiable in :obj:`q`, :obj:`k`,
        :obj:`v`, :obj:`pos` and :obj:`bias` (first order).
    """
    if not isinstance(hierarchy, HierarchyLike):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy (see "
                        f"Hierarchy.from_parent), got {type(hierarchy).__name__}")
    # each kind of hierarchy runs the call its own way (HierarchyLike.attend):
    # a compiled forest on the engine, LoneLeaves without attention, a
    # ShardedHierarchy across processes once the ranks have compared calls
    return hierarchy.attend(q, k, v, pos=pos, bias=bias, include_self=include_self,
                            causal=causal, scale=scale, dropout=dropout)
