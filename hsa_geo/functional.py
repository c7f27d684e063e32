r"""The HSA dynamic program: exact Hierarchical Self-Attention in time linear in
the number of leaves.

Amizadeh et al., `"Hierarchical Self-Attention: Generalizing Neural Attention
Mechanics to Multi-Scale Problems" <https://arxiv.org/abs/2509.15448>`_,
NeurIPS 2025, Algorithm 3 with the two corrections of ``shared/HSA_SPEC.md``.

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
``include_self``).  Everything that can be infinite (:math:`\phi = +\infty` of
single-leaf subtrees, :math:`\eta = +\infty` of nodes without siblings) is known
from the structure alone, so it is handled by masks and never enters the
arithmetic: no NaN in the forward or the backward pass.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from hsa_geo.hierarchy import Bucket, Hierarchy

__all__ = ['hsa']


def hsa(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
        pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
        include_self: bool = False, causal: bool = False,
        scale: Optional[float] = None) -> Tensor:
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
            node index. (default: :obj:`False`)
        scale (float, optional): Score scale, :math:`1/\sqrt{d}` if
            :obj:`None`.

    Returns:
        Tensor ``[num_leaves, heads, d_v]`` in the dtype of :obj:`v`
        (float16/bfloat16 inputs are computed in float32).  A leaf with nothing
        to attend to gets a zero row.
    """
    _check_inputs(q, k, v, hierarchy, pos, bias)
    out_dtype = v.dtype
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    pos = None if pos is None else pos.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    heads, dim = q.size(1), q.size(2)
    scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
    # phi = +inf is structural: nowhere with include_self, everywhere for
    # causal attention without self, else exactly at single-leaf subtrees.
    phi_mode = 'none' if include_self else ('all' if causal else 'single')

    levels = hierarchy.levels
    if hierarchy.leaf_perm is not None:
        q, k, v = q[hierarchy.leaf_perm], k[hierarchy.leaf_perm], v[hierarchy.leaf_perm]
    xq, xk, xv = q, k, v
    phi: Optional[Tensor] = None
    if include_self:
        self_score = (q * k).sum(-1) * scale
        if pos is not None:
            self_score = self_score + _self_pos(pos[levels[0].rep])
        phi = -self_score
    elif phi_mode == 'single':
        phi = q.new_zeros(q.shape[:2])  # placeholder: every leaf has phi = +inf

    # ---------------------------------------------------------------- bottom-up
    saved: List[List[Tuple]] = []
    for h in range(len(levels) - 1):
        level, upper = levels[h], levels[h + 1]
        pos_level = None if pos is None else pos[level.rep]
        fam_q, fam_k, fam_v, fam_phi, level_saved = [], [], [], [], []
        for bucket in level.buckets:
            out = _family_up(bucket, xq, xk, xv, phi, pos_level, bias,
                             phi_mode, causal, scale)
            fam_q.append(out[0])
            fam_k.append(out[1])
            fam_v.append(out[2])
            fam_phi.append(out[3])
            level_saved.append(out[4:])
        saved.append(level_saved)
        select = upper.family_of_child
        xq = _take(torch.cat(fam_q), select, upper.num_children)
        xk = _take(torch.cat(fam_k), select, upper.num_children)
        xv = _take(torch.cat(fam_v), select, upper.num_children)
        phi = None if phi_mode == 'all' else _take(torch.cat(fam_phi), select,
                                                   upper.num_children)

    # ----------------------------------------------------------------- top-down
    top = levels[-1]
    dim_v = v.size(-1)
    acc = v.new_zeros(top.num_nodes, heads, dim_v)
    weight = v.new_ones(top.num_nodes, heads)
    for h in range(len(levels) - 2, -1, -1):
        level, upper = levels[h], levels[h + 1]
        acc_fam = _take(acc, level.parent_position, upper.num_nodes)
        weight_fam = _take(weight, level.parent_position, upper.num_nodes)
        accs, weights = [], []
        for bucket, state in zip(level.buckets, saved[h]):
            a, w = _family_down(bucket, state,
                                acc_fam[bucket.family_start:bucket.family_end],
                                weight_fam[bucket.family_start:bucket.family_end])
            accs.append(a)
            weights.append(w)
        if level.num_roots:
            accs.append(v.new_zeros(level.num_roots, heads, dim_v))
            weights.append(v.new_ones(level.num_roots, heads))
        acc = torch.cat(accs) if len(accs) > 1 else accs[0]
        weight = torch.cat(weights) if len(weights) > 1 else weights[0]

    out = acc
    if include_self:
        out = out + weight.unsqueeze(-1) * v
    if hierarchy.leaf_perm is not None:
        out = out[hierarchy.leaf_inv]
    return out.to(out_dtype)


def _take(x: Tensor, index: Optional[Tensor], count: int) -> Tensor:
    return x[:count] if index is None else x[index]


def _self_pos(pos: Tensor) -> Tensor:
    r"""``pos . pos`` per node, as ``[num, 1]`` (shared) or ``[num, heads]``."""
    if pos.dim() == 2:
        return (pos * pos).sum(-1, keepdim=True)
    return (pos * pos).sum(-1)


def _block(x: Tensor, bucket: Bucket) -> Tensor:
    r"""The bucket's children of a level-ordered tensor as ``[F, b, ...]``."""
    x = x[bucket.child_start:bucket.child_end]
    if bucket.index is None:
        return x.view(bucket.num_families, bucket.size, *x.shape[1:])
    x = torch.cat([x, x.new_zeros((1, ) + x.shape[1:])])
    return x[bucket.index]


def _structural_mask(size: int, causal: bool, dtype, device) -> Tensor:
    r"""``[b, b]`` 0 where child ``i`` may attend sibling ``j``, else -inf.

    With ``causal``, the first child has no sibling to attend to; its row keeps
    the (0, 0) entry open so that no row is all -inf (its results are masked
    out by ``mu = 1`` later), which keeps the backward pass free of NaN."""
    idx = torch.arange(size, device=device)
    if causal:
        allowed = (idx.view(-1, 1) > idx.view(1, -1))
        allowed[0, 0] = True
    else:
        allowed = idx.view(-1, 1) != idx.view(1, -1)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, -math.inf)


def _bias_block(bias: Tensor, bucket: Bucket) -> Tensor:
    r"""The bucket's pair biases as ``[F, heads or 1, b, b]``."""
    f, b = bucket.num_families, bucket.size
    x = bias[bucket.pair_start:bucket.pair_end]
    trailing = x.shape[1:]
    if bucket.pair_index is None:
        # [F, b, b-1] off-diagonal entries -> [F, b, b] with a zero diagonal
        x = x.reshape(f, b - 1, b, *trailing)
        x = F.pad(x, _pad_arg(len(trailing), 1, after=True))
        x = x.reshape(f, (b - 1) * (b + 1), *trailing)
        x = F.pad(x, _pad_arg(len(trailing), 1, after=False))
        x = x.view(f, b, b, *trailing)
    else:
        x = torch.cat([x, x.new_zeros((1, ) + trailing)])[bucket.pair_index]
    if trailing:
        return x.permute(0, 3, 1, 2)
    return x.unsqueeze(1)


def _pad_arg(num_trailing: int, amount: int, after: bool) -> Tuple[int, ...]:
    # F.pad pads from the last dimension backwards
    pad = [0, 0] * num_trailing
    pad += [0, amount] if after else [amount, 0]
    return tuple(pad)


def _family_up(bucket: Bucket, xq: Tensor, xk: Tensor, xv: Tensor,
               phi: Optional[Tensor], pos: Optional[Tensor],
               bias: Optional[Tensor], phi_mode: str, causal: bool,
               scale: float):
    r"""Sibling attention inside the bucket's families and the statistics of
    their parents.

    Returns the parents' ``rho_q, rho_k, rho_v`` (``[F, heads, d]``) and
    ``phi`` (``[F, heads]`` or :obj:`None`), then what the top-down pass needs:
    ``theta`` (``[F, heads, b, d_v]``), ``mu`` and ``1 - mu``
    (``[F, heads, b]``; :obj:`None` for mu = 0, 1 - mu = 1)."""
    if bucket.size == 1:  # a lone child: no sibling, mu = 1, parent = child
        lo, hi = bucket.child_start, bucket.child_end
        parent_phi = None if phi is None else phi[lo:hi]
        return xq[lo:hi], xk[lo:hi], xv[lo:hi], parent_phi, None, None, None

    f, b = bucket.num_families, bucket.size
    query = _block(xq, bucket).transpose(1, 2)   # [F, H, b, d]
    key = _block(xk, bucket).transpose(1, 2)
    value = _block(xv, bucket).transpose(1, 2)
    dtype, device = query.dtype, query.device

    logits = torch.matmul(query, key.transpose(-1, -2)) * scale   # [F, H, b, b]
    if pos is not None:
        p = _block(pos, bucket)
        if p.dim() == 3:            # shared by heads: [F, b, c]
            logits = logits + torch.matmul(p, p.transpose(-1, -2)).unsqueeze(1)
        else:                       # per head: [F, b, H, c]
            p = p.transpose(1, 2)
            logits = logits + torch.matmul(p, p.transpose(-1, -2))
    if bias is not None:
        logits = logits + _bias_block(bias, bucket)
    mask = _structural_mask(b, causal, dtype, device)
    count = None
    if bucket.unit and not bucket.padded:
        logits = logits + mask
    else:
        count = bucket.leaf_count.to(dtype)                       # [F, b]
        logits = logits + (mask + count.log().view(f, 1, 1, b))   # n(B) weights
    lse = torch.logsumexp(logits, dim=-1)                         # = -eta
    attn = torch.exp(logits - lse.unsqueeze(-1))
    theta = torch.matmul(attn, value)                             # [F, H, b, d_v]

    # ---- which children have phi = +inf, which have a sibling
    if phi_mode == 'all':
        phi_inf = True
    elif phi_mode == 'none':
        phi_inf = False
    elif bucket.unit:
        phi_inf = True
    else:
        phi_inf = (bucket.leaf_count == 1).view(f, 1, b)
    first = None
    if causal:
        first = torch.arange(b, device=device) == 0                # no left sibling

    # ---- mu and 1 - mu
    mu = one_minus_mu = None
    child_phi = None
    if phi_inf is not True:
        child_phi = _block(phi, bucket).transpose(1, 2)           # [F, H, b]
        x = -lse - child_phi                                      # eta - phi
        mu, one_minus_mu = torch.sigmoid(x), torch.sigmoid(-x)
        if phi_inf is not False:
            mu = mu.masked_fill(phi_inf, 0.0)
            one_minus_mu = one_minus_mu.masked_fill(phi_inf, 1.0)
    if first is not None:
        if mu is None:
            mu = first.to(dtype).expand(f, lse.size(1), b)
            one_minus_mu = (~first).to(dtype).expand(f, lse.size(1), b)
        else:
            mu = mu.masked_fill(first, 1.0)
            one_minus_mu = one_minus_mu.masked_fill(first, 0.0)

    # ---- parent statistics (n-weighted means)
    if count is None:
        parent_q, parent_k, parent_v = query.mean(2), key.mean(2), value.mean(2)
        weight = None
    else:
        weight = (count / count.sum(1, keepdim=True)).view(f, 1, b)
        w4 = weight.unsqueeze(-1)
        parent_q = (query * w4).sum(2)
        parent_k = (key * w4).sum(2)
        parent_v = (value * w4).sum(2)

    parent_phi = None
    if phi_mode != 'all':
        # log(exp(-phi) + exp(-eta)) per child, each infinite case by structure
        if phi_inf is True:
            term = lse
        elif phi_inf is False:
            term = torch.logaddexp(-child_phi, lse)
        else:
            term = torch.where(phi_inf, lse, torch.logaddexp(-child_phi, lse))
        if first is not None:  # no sibling: eta = +inf, so the term is -phi
            term = torch.where(first, -child_phi, term)
        parent_phi = -(term.mean(-1) if weight is None else (term * weight).sum(-1))
    return parent_q, parent_k, parent_v, parent_phi, theta, mu, one_minus_mu


def _family_down(bucket: Bucket, state: Tuple, acc_parent: Tensor,
                 weight_parent: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Top-down step for the bucket's children; returns their ``acc``
    (``[children, heads, d_v]``) and ``w`` (``[children, heads]``) in level
    order."""
    theta, mu, one_minus_mu = state
    if theta is None:  # lone children inherit everything
        return acc_parent, weight_parent
    f, b = bucket.num_families, bucket.size
    coef = weight_parent.unsqueeze(-1)                          # [F, H, 1]
    if one_minus_mu is not None:
        coef = coef * one_minus_mu                              # [F, H, b]
    acc = acc_parent.unsqueeze(2) + coef.unsqueeze(-1) * theta  # [F, H, b, d_v]
    if mu is None:
        weight = weight_parent.new_zeros(f, b, weight_parent.size(-1))
    else:
        weight = (weight_parent.unsqueeze(-1) * mu).transpose(1, 2)
    acc = acc.transpose(1, 2)                                   # [F, b, H, d_v]
    if bucket.index is None:
        return (acc.reshape(f * b, *acc.shape[2:]),
                weight.reshape(f * b, weight.size(-1)))
    valid = bucket.index < (bucket.child_end - bucket.child_start)
    return acc[valid], weight[valid]


def _check_inputs(q, k, v, hierarchy, pos, bias):
    if not isinstance(hierarchy, Hierarchy):
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
    if k.shape != q.shape:
        raise ValueError(f"'k' must have the shape of 'q' {list(q.shape)}, got "
                         f"{list(k.shape)}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"'v' must have shape [{q.size(0)}, {q.size(1)}, d_v] "
                         f"to match 'q', got {list(v.shape)}")
    if q.size(0) != hierarchy.num_leaves:
        raise ValueError(f"'q' has {q.size(0)} rows but the hierarchy has "
                         f"{hierarchy.num_leaves} leaves")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"'q', 'k' and 'v' must share a dtype, got {q.dtype}, "
                        f"{k.dtype} and {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"'q', 'k' and 'v' must be on one device, got "
                         f"{q.device}, {k.device} and {v.device}")
    if hierarchy.device != q.device:
        raise ValueError(f"'hierarchy' is on {hierarchy.device} but 'q' is on "
                         f"{q.device}; move it with hierarchy.to(device)")
    heads = q.size(1)
    if pos is not None:
        if not isinstance(pos, Tensor) or not pos.is_floating_point():
            raise TypeError("'pos' must be a floating-point tensor")
        ok = pos.dim() == 2 or (pos.dim() == 3 and pos.size(1) == heads)
        if not ok or pos.size(0) != hierarchy.num_nodes:
            raise ValueError(f"'pos' must have shape [num_nodes={hierarchy.num_nodes}, "
                             f"c] or [{hierarchy.num_nodes}, heads={heads}, c], "
                             f"got {list(pos.shape)}")
        if pos.device != q.device:
            raise ValueError(f"'pos' is on {pos.device} but 'q' is on {q.device}")
    if bias is not None:
        if not isinstance(bias, Tensor) or not bias.is_floating_point():
            raise TypeError("'bias' must be a floating-point tensor")
        ok = bias.dim() == 1 or (bias.dim() == 2 and bias.size(1) == heads)
        if not ok or bias.size(0) != hierarchy.num_pairs:
            raise ValueError(f"'bias' must have shape [num_pairs={hierarchy.num_pairs}] "
                             f"or [{hierarchy.num_pairs}, heads={heads}] (one "
                             f"entry per column of hierarchy.sibling_index), got "
                             f"{list(bias.shape)}")
        if bias.device != q.device:
            raise ValueError(f"'bias' is on {bias.device} but 'q' is on {q.device}")
