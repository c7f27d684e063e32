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

and top-down, with :math:`\mu(C) = \sigma(\eta(C) - \phi(C))`,
:math:`w(\text{root}) = 1` and :math:`\text{acc}(\text{root}) = 0`,

.. math::
    \text{acc}(C) &= \text{acc}(P) + w(P) (1 - \mu(C)) \, \theta(C) \\
    w(C) &= w(P) \, \mu(C)

so that :math:`\text{out}_i = \text{acc}(i)` (plus :math:`w(i) v_i` with
``include_self``).

Implementation notes:

* Everything that can be infinite (:math:`\phi = +\infty` of single-leaf
  subtrees, :math:`\eta = +\infty` of nodes without siblings) is known from the
  structure alone, so it is handled by masks and never enters the arithmetic.
* Families are processed in cache-sized chunks (dense ``[F, heads, b, b]``
  score blocks); very wide families are split by query rows, like
  FlashAttention.  The backward pass is written by hand: it saves only
  per-node statistics (:math:`\eta`, :math:`\mu`, :math:`w`, :math:`\theta`)
  and recomputes the score blocks, so memory stays :math:`O(N d)`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from hsa_geo._checks import as_bool, as_finite_float
from hsa_geo import engine
from hsa_geo import compiled as op
from hsa_geo.engine import Config
from hsa_geo.hierarchy import Hierarchy

__all__ = ['hsa']


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
    if isinstance(hierarchy, ShardedHierarchy):
        # this rank's share of one tree: its inputs are checked once the ranks
        # have compared their calls, so that a fault on one rank raises on all
        # of them instead of leaving the others waiting in a collective
        return hierarchy.attention(q, k, v, pos, include_self, causal, scale, bias=bias,
                                   dropout=dropout)
    _check_inputs(q, k, v, hierarchy, pos, bias)
    include_self, causal, scale = check_options(q, include_self, causal, scale)
    dropout = as_finite_float(dropout, 'dropout')
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must be in [0, 1), got {dropout}")
    out_dtype = result_dtype(v)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    pos = None if pos is None else pos.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    if torch.compiler.is_compiling() and not isinstance(hierarchy, LoneLeaves):
        # one opaque call: no size of this batch's forest enters the graph
        if isinstance(hierarchy, FlatFamilies):
            structure = hierarchy.batch if hierarchy.batch is not None else q.new_empty(0)
            kind = 'batch' if hierarchy.batch is not None else 'single'
        else:  # the hierarchy's token: a fixed-size stand-in, no size of the forest
            structure, kind = hierarchy.token, 'token'
        out, _ = op.attention(q, k, v, pos, bias, structure, kind, include_self, causal,
                              scale, dropout)
        return out.to(out_dtype)
    if isinstance(hierarchy, LoneLeaves):
        op.check_sizes(q, None, None, hierarchy.hierarchy)
        if pos is not None or bias is not None:
            raise ValueError("'pos' and 'bias' belong to sibling pairs, and LoneLeaves "
                             "has none: pass neither")
        return (v if include_self else torch.zeros_like(v)).to(out_dtype)
    if isinstance(hierarchy, FlatFamilies):
        hierarchy = op.flat_hierarchy(hierarchy.batch, q.size(0), q.device)
    hierarchy.check_intact()
    op.check_sizes(q, pos, bias, hierarchy)
    guard = engine.needs_guard(q, k, v, pos, bias)
    out = engine.attention(hierarchy.forest, Config(include_self, causal, scale, dropout, guard),
                           q, k, v, pos, bias)
    return out.to(out_dtype)


class LoneLeaves:
    r"""The leaves of :obj:`hierarchy`, each a tree of its own: no leaf has
    a sibling, so :func:`hsa` returns zeros (each leaf's own value with
    ``include_self``).  Attention switched off with every size and leaf type
    of the hierarchy kept, and nothing compiled: the DeepSet baseline of a
    hierarchical model (e.g. ``HTEPredictor(attention=False)``)."""
    __slots__ = ('hierarchy', )

    def __init__(self, hierarchy: Hierarchy):
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"'hierarchy' must be a compiled Hierarchy, got "
                            f"{type(hierarchy).__name__}")
        self.hierarchy = hierarchy

    def __getattr__(self, name):  # sizes, leaf types, device: the hierarchy's
        if name == 'hierarchy' or name.startswith('__'):  # copy / pickle probes
            raise AttributeError(name)
        return getattr(self.hierarchy, name)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.hierarchy!r})'


class FlatFamilies:
    r"""One flat family per graph of :obj:`batch` (all leaves in one family
    when it is :obj:`None`): the forest of softmax attention within each
    graph, which :func:`hsa` builds itself, once per batch tensor, so that a
    layer given only PyG's ``batch`` vector (e.g. :class:`HSAGPSConv` without
    a hierarchy) compiles into one graph."""
    __slots__ = ('batch', )

    def __init__(self, batch: Optional[Tensor]):
        self.batch = batch

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(batch={self.batch is not None})'


def result_dtype(v: Tensor) -> torch.dtype:
    r"""The dtype of HSA's output: that of :obj:`v`, or under
    :func:`torch.autocast` the autocast dtype, as PyTorch's own attention
    (``scaled_dot_product_attention``) returns it; float64 stays float64.
    Inside, half precision is always computed in float32."""
    device = v.device.type
    if v.dtype != torch.float64 and device in ('cpu', 'cuda', 'xpu') and \
            torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return v.dtype


def check_options(q: Tensor, include_self, causal, scale):
    r"""``(include_self, causal, scale)`` checked, the scale defaulting to
    :math:`1/\sqrt{d}`."""
    include_self = as_bool(include_self, 'include_self')
    causal = as_bool(causal, 'causal')
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else as_finite_float(scale, 'scale')
    return include_self, causal, scale


def _check_inputs(q, k, v, hierarchy, pos, bias):
    if not isinstance(hierarchy, (Hierarchy, FlatFamilies, LoneLeaves, ShardedHierarchy)):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy (see "
                        f"Hierarchy.from_parent), got {type(hierarchy).__name__}")
    for name, t in (('q', q), ('k', k), ('v', v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"'{name}' must be a Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"'{name}' must be a floating-point tensor, got "
                            f"dtype {t.dtype}")
        if t.dim() != 3:
            raise ValueError(f"'{name}' must have shape [num_leaves, heads, "
                             f"channels], got shape {list(t.shape)}")
    for name, size in (('heads', q.size(1)), ('channels of q', q.size(2)),
                       ('channels of v', v.size(2))):
        if size == 0:
            raise ValueError(f"'q', 'k' and 'v' must have at least one head and one "
                             f"channel, got {name} = 0 (q {list(q.shape)}, v "
                             f"{list(v.shape)})")
    if k.shape != q.shape:
        raise ValueError(f"'k' must have the shape of 'q' {list(q.shape)}, got "
                         f"{list(k.shape)}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"'v' must have shape [{q.size(0)}, {q.size(1)}, d_v] "
                         f"to match 'q', got {list(v.shape)}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"'q', 'k' and 'v' must share a dtype, got {q.dtype}, "
                        f"{k.dtype} and {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"'q', 'k' and 'v' must be on one device, got "
                         f"{q.device}, {k.device} and {v.device}")
    heads = q.size(1)
    if pos is not None:
        if not isinstance(pos, Tensor) or not pos.is_floating_point():
            raise TypeError("'pos' must be a floating-point tensor")
        if not (pos.dim() == 2 or (pos.dim() == 3 and pos.size(1) == heads)):
            raise ValueError(f"'pos' must have shape [num_nodes, c] or [num_nodes, "
                             f"heads={heads}, c], got {list(pos.shape)}")
        if pos.device != q.device:
            raise ValueError(f"'pos' is on {pos.device} but 'q' is on {q.device}")
    if bias is not None:
        if not isinstance(bias, Tensor) or not bias.is_floating_point():
            raise TypeError("'bias' must be a floating-point tensor")
        if not (bias.dim() == 1 or (bias.dim() == 2 and bias.size(1) == heads)):
            raise ValueError(f"'bias' must have shape [num_pairs] or [num_pairs, "
                             f"heads={heads}] (one entry per column of "
                             f"hierarchy.sibling_index), got {list(bias.shape)}")
        if bias.device != q.device:
            raise ValueError(f"'bias' is on {bias.device} but 'q' is on {q.device}")


# at the end: hsa_geo.distributed calls back into this module
from hsa_geo.distributed.shard import ShardedHierarchy  # noqa: E402
