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
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo.hierarchy import Bucket, Hierarchy

__all__ = ['hsa']

# Elements per [rows, heads, d] chunk tensor and per score block on the CPU:
# small enough to stay in cache, large enough for efficient batched GEMMs.
_CPU_ROW_ELEMENTS = 1 << 19
_CPU_SCORE_ELEMENTS = 1 << 20
_GPU_ROW_ELEMENTS = 1 << 27
_GPU_SCORE_ELEMENTS = 1 << 28


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
            node index.  Without :obj:`include_self` the first leaf of every
            subtree has nothing inside it to attend to, so the block constraint
            sends the whole subtree's attention outside it; use both together
            for autoregressive models. (default: :obj:`False`)
        scale (float, optional): Score scale, :math:`1/\sqrt{d}` if
            :obj:`None`.

    Returns:
        Tensor ``[num_leaves, heads, d_v]`` in the dtype of :obj:`v`
        (float16/bfloat16 inputs are computed in float32).  A leaf with nothing
        to attend to gets a zero row.  Differentiable in :obj:`q`, :obj:`k`,
        :obj:`v`, :obj:`pos` and :obj:`bias` (first order).
    """
    _check_inputs(q, k, v, hierarchy, pos, bias)
    out_dtype = v.dtype
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    pos = None if pos is None else pos.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    plan = _Plan(hierarchy, include_self, causal, scale, q)
    out = _HSAFunction.apply(plan, q, k, v, pos, bias)
    return out.to(out_dtype)


class _HSAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: '_Plan', q, k, v, pos, bias):
        out, state = plan.forward(q, k, v, pos, bias)
        ctx.plan, ctx.state = plan, state
        ctx.save_for_backward(q, k, v, pos, bias)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, pos, bias = ctx.saved_tensors
        grads = ctx.plan.backward(grad_out.contiguous(), q, k, v, pos, bias,
                                  ctx.state, ctx.needs_input_grad[1:])
        return (None, ) + grads


class _Access:
    r"""Reads and writes one bucket's children in a level-ordered tensor as
    ``[F, b, ...]``: views for exact buckets, gathered copies for padded ones
    (whose results are scattered back by :meth:`commit`)."""
    def __init__(self, bucket: Bucket):
        self.bucket = bucket
        if bucket.index is not None:
            count = bucket.child_end - bucket.child_start
            self.valid = bucket.index < count
            self.targets = bucket.child_start + bucket.index[self.valid]

    def get(self, x: Tensor) -> Tensor:
        b = self.bucket
        rows = x[b.child_start:b.child_end]
        if b.index is None:
            return rows.view(b.num_families, b.size, *x.shape[1:])
        rows = torch.cat([rows, rows.new_zeros((1, ) + rows.shape[1:])])
        return rows[b.index]

    def zeros(self, x: Tensor) -> Tensor:
        r"""A zero-initialised ``[F, b, ...]`` accumulator for buffer ``x``."""
        b = self.bucket
        if b.index is None:
            return self.get(x)
        return x.new_zeros((b.num_families, b.size) + x.shape[1:])

    def commit(self, x: Tensor, local: Tensor, accumulate: bool = False):
        if self.bucket.index is not None:
            x.index_put_((self.targets, ), local[self.valid], accumulate=accumulate)


class _Plan:
    r"""One call's static configuration: the hierarchy, flags and chunking."""
    def __init__(self, hierarchy: Hierarchy, include_self: bool, causal: bool,
                 scale: float, q: Tensor):
        self.h = hierarchy
        self.include_self = include_self
        self.causal = causal
        self.scale = scale
        # phi = +inf is structural: nowhere with include_self, everywhere for
        # causal attention without self, else exactly at single-leaf subtrees.
        self.phi_mode = 'none' if include_self else ('all' if causal else 'single')
        self.track_phi = self.phi_mode != 'all'
        on_gpu = q.device.type != 'cpu'
        self.row_budget = _GPU_ROW_ELEMENTS if on_gpu else _CPU_ROW_ELEMENTS
        self.score_budget = _GPU_SCORE_ELEMENTS if on_gpu else _CPU_SCORE_ELEMENTS

    # ------------------------------------------------------------ chunking
    def chunks(self, bucket: Bucket, heads: int, width: int):
        r"""Yields ``(f0, f1, i0, i1)``: families ``f0:f1`` of the bucket and
        their query rows ``i0:i1``."""
        b, num = bucket.size, bucket.num_families
        if bucket.index is not None:
            yield 0, num, 0, b
            return
        per_family = max(1, heads * b * b)
        fam = min(self.row_budget // max(1, heads * width * b),
                  self.score_budget // per_family)
        if fam >= 1:
            for f0 in range(0, num, fam):
                yield f0, min(num, f0 + fam), 0, b
            return
        rows = max(1, self.score_budget // (heads * b))
        for f0 in range(num):
            for i0 in range(0, b, rows):
                yield f0, f0 + 1, i0, min(b, i0 + rows)

    # ------------------------------------------------------------- helpers
    def masks(self, bucket: Bucket, access: _Access, f0: int, f1: int, i0: int,
              i1: int, device):
        r"""phi = +inf mask (True / False / ``[F, rows]``) and the causal
        first-child mask (``[rows]`` or None) for the chunk's query rows."""
        if self.phi_mode == 'all' or (self.phi_mode == 'single' and bucket.unit):
            phi_inf = True
        elif self.phi_mode == 'none':
            phi_inf = False
        else:
            phi_inf = bucket.leaf_count[f0:f1, i0:i1] == 1
        first = None
        if self.causal and i0 == 0:
            first = torch.arange(i1 - i0, device=device) == 0
        return phi_inf, first

    def scores(self, bucket: Bucket, access: _Access, query: Tensor, key: Tensor,
               pos_block: Optional[Tensor], bias: Optional[Tensor], f0: int,
               f1: int, i0: int, i1: int) -> Tensor:
        r"""``[F, heads, rows, b]`` masked logits of the chunk (including
        :math:`\log n(B)`)."""
        b = bucket.size
        logits = torch.matmul(query, key.transpose(-1, -2)).mul_(self.scale)
        if pos_block is not None:
            p_all = pos_block[f0:f1]
            p_rows = p_all[:, i0:i1]
            if p_all.dim() == 3:
                logits.add_(torch.matmul(p_rows, p_all.transpose(-1, -2)).unsqueeze(1))
            else:
                logits.add_(torch.matmul(p_rows.transpose(1, 2),
                                         p_all.permute(0, 2, 3, 1)))
        if bias is not None:
            logits.add_(self.bias_block(bucket, bias, f0, f1, i0, i1))
        dtype, device = logits.dtype, logits.device
        rows = torch.arange(i0, i1, device=device).view(-1, 1)
        cols = torch.arange(b, device=device).view(1, -1)
        if self.causal:
            allowed = (cols < rows) | ((rows == 0) & (cols == 0))
        else:
            allowed = cols != rows
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask.masked_fill_(~allowed, -math.inf)
        if not (bucket.unit and bucket.index is None):
            count = bucket.leaf_count[f0:f1].to(dtype)
            mask = mask + count.log().view(f1 - f0, 1, 1, b)
        return logits.add_(mask)

    def bias_block(self, bucket: Bucket, bias: Tensor, f0: int, f1: int, i0: int,
                   i1: int) -> Tensor:
        r"""``[F, heads or 1, rows, b]`` pair biases (zero on the diagonal)."""
        b, num = bucket.size, f1 - f0
        trailing = bias.shape[1:]
        if bucket.pair_index is not None:
            padded = torch.cat([bias[bucket.pair_start:bucket.pair_end],
                                bias.new_zeros((1, ) + trailing)])
            block = padded[bucket.pair_index[f0:f1, i0:i1]]
        else:
            per = b * (b - 1)
            start = bucket.pair_start + f0 * per
            vals = bias[start:start + num * per].view(num, b, b - 1, *trailing)
            vals = vals[:, i0:i1].reshape(num, (i1 - i0) * (b - 1), *trailing)
            block = bias.new_zeros((num, i1 - i0, b) + trailing)
            block[:, self._offdiag(b, i0, i1, bias.device)] = vals
        if trailing:
            return block.permute(0, 3, 1, 2)
        return block.unsqueeze(1)

    def bias_grad(self, bucket: Bucket, grad_bias: Tensor, grad_logits: Tensor,
                  f0: int, f1: int, i0: int, i1: int):
        r"""Adds the chunk's ``[F, heads, rows, b]`` logit gradient to the
        pair-bias gradient."""
        shared = grad_bias.dim() == 1
        g = grad_logits.sum(1) if shared else grad_logits.permute(0, 2, 3, 1)
        b, num = bucket.size, f1 - f0
        if bucket.pair_index is not None:
            idx = bucket.pair_index[f0:f1, i0:i1]
            keep = idx < bucket.pair_end - bucket.pair_start
            grad_bias.index_add_(0, bucket.pair_start + idx[keep], g[keep])
            return
        per = b * (b - 1)
        vals = g[:, self._offdiag(b, i0, i1, g.device)]        # [F, rows*(b-1), ...]
        target = grad_bias[bucket.pair_start + f0 * per:bucket.pair_start + f1 * per]
        target = target.view(num, b, b - 1, *grad_bias.shape[1:])[:, i0:i1]
        target.add_(vals.view(num, i1 - i0, b - 1, *grad_bias.shape[1:]))

    @staticmethod
    def _offdiag(b: int, i0: int, i1: int, device) -> Tensor:
        rows = torch.arange(i0, i1, device=device).view(-1, 1)
        return torch.arange(b, device=device).view(1, -1) != rows

    def mu_terms(self, lse: Tensor, phi: Optional[Tensor], phi_inf, first):
        r"""From ``-eta`` (``lse``) and ``phi`` of a chunk's children, all as
        ``[F, rows, heads]``: ``mu``, ``1 - mu`` and the parent-energy term
        :math:`\log(e^{-\phi} + e^{-\eta})` (None when phi is not tracked)."""
        if phi_inf is True:
            mu = torch.zeros_like(lse)
            omm = torch.ones_like(lse)
            term = lse if self.track_phi else None
        else:
            x = -lse - phi                                   # eta - phi
            mu, omm = torch.sigmoid(x), torch.sigmoid(-x)
            term = torch.logaddexp(-phi, lse)
            if phi_inf is not False:
                m = phi_inf.unsqueeze(-1)
                mu = mu.masked_fill(m, 0.0)
                omm = omm.masked_fill(m, 1.0)
                term = torch.where(m, lse, term)
        if first is not None:  # no left sibling: eta = +inf
            m = first.view(1, -1, 1)
            mu = mu.masked_fill(m, 1.0)
            omm = omm.masked_fill(m, 0.0)
            if term is not None:
                term = torch.where(m, -phi, term)
        return mu, omm, term

    def family_weights(self, bucket: Bucket, f0: int, f1: int, dtype):
        r"""``n(C) / n(P)`` of the chunk's children as ``[F, b]`` (None when
        all children are single leaves of an exact bucket: then 1/b)."""
        if bucket.unit and bucket.index is None:
            return None
        count = bucket.leaf_count[f0:f1].to(dtype)
        return count / count.sum(1, keepdim=True)

    # ------------------------------------------------------------- forward
    def forward(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor],
                bias: Optional[Tensor]):
        h = self.h
        levels = h.levels
        heads, dim, dim_v = q.size(1), q.size(2), v.size(2)
        if h.leaf_perm is not None:
            q, k, v = q[h.leaf_perm], k[h.leaf_perm], v[h.leaf_perm]
        xq, xk, xv = q, k, v
        phi = None
        if self.include_self:
            phi = -self.self_score(q, k, pos)
        elif self.phi_mode == 'single':
            phi = q.new_zeros(q.shape[:2])  # every leaf has phi = +inf (masked)

        saved = []
        for depth in range(len(levels) - 1):
            level, upper = levels[depth], levels[depth + 1]
            num_kids = level.num_children
            lse = q.new_zeros(num_kids, heads)
            mu = q.new_ones(num_kids, heads)
            omm = q.new_zeros(num_kids, heads)
            theta = q.new_zeros(num_kids, heads, dim_v)
            num_fam = upper.num_nodes
            fam_q = q.new_empty(num_fam, heads, dim)
            fam_k = q.new_empty(num_fam, heads, dim)
            fam_v = q.new_empty(num_fam, heads, dim_v)
            fam_phi = q.new_zeros(num_fam, heads) if self.track_phi else None
            pos_level = None if pos is None else pos[level.rep]
            for bucket in level.buckets:
                self.up_bucket(bucket, xq, xk, xv, phi, pos_level, bias, lse, mu,
                               omm, theta, fam_q, fam_k, fam_v, fam_phi)
            # level 0's statistics are the inputs: not kept twice
            kept = (None, None, None) if depth == 0 else (xq, xk, xv)
            saved.append(kept + (phi, lse, mu, omm, theta))
            select = upper.family_of_child
            xq = _take(fam_q, select, upper.num_children)
            xk = _take(fam_k, select, upper.num_children)
            xv = _take(fam_v, select, upper.num_children)
            phi = None if fam_phi is None else _take(fam_phi, select, upper.num_children)

        # top-down
        top = levels[-1]
        acc = q.new_zeros(top.num_nodes, heads, dim_v)
        weight = q.new_ones(top.num_nodes, heads)
        weights = [weight]
        for depth in range(len(levels) - 2, -1, -1):
            level, upper = levels[depth], levels[depth + 1]
            _, _, _, _, _, mu, omm, theta = saved[depth]
            acc_fam = _take(acc, level.parent_position, upper.num_nodes)
            weight_fam = _take(weight, level.parent_position, upper.num_nodes)
            acc = q.new_zeros(level.num_nodes, heads, dim_v)
            weight = q.new_ones(level.num_nodes, heads)
            for bucket in level.buckets:
                self.down_bucket(bucket, acc_fam, weight_fam, mu, omm, theta,
                                 acc, weight)
            weights.append(weight)
        weights.reverse()
        out = acc
        if self.include_self:
            out.addcmul_(weights[0].unsqueeze(-1), v)
        if h.leaf_perm is not None:
            out = out[h.leaf_inv]
        return out, (saved, weights)

    def self_score(self, q: Tensor, k: Tensor, pos: Optional[Tensor]) -> Tensor:
        r"""``s(i, i)`` of the leaves in level order, ``[num_leaves, heads]``."""
        score = torch.linalg.vecdot(q, k) * self.scale
        if pos is not None:
            p = pos[self.h.levels[0].rep]
            pp = torch.linalg.vecdot(p, p)
            score = score + (pp.unsqueeze(-1) if p.dim() == 2 else pp)
        return score

    def up_bucket(self, bucket: Bucket, xq, xk, xv, phi, pos_level, bias, lse_buf,
                  mu_buf, omm_buf, theta_buf, fam_q, fam_k, fam_v, fam_phi):
        fs, fe = bucket.family_start, bucket.family_end
        if bucket.size == 1:  # lone children: no sibling, the parent is the child
            c0, c1 = bucket.child_start, bucket.child_end
            fam_q[fs:fe], fam_k[fs:fe], fam_v[fs:fe] = xq[c0:c1], xk[c0:c1], xv[c0:c1]
            if fam_phi is not None:
                fam_phi[fs:fe] = phi[c0:c1]
            return
        access = _Access(bucket)
        heads, dim_v = xq.size(1), xv.size(2)
        bq, bk, bv = access.get(xq), access.get(xk), access.get(xv)  # [F, b, H, d]
        bphi = None if phi is None else access.get(phi)               # [F, b, H]
        bpos = None if pos_level is None else access.get(pos_level)
        out_lse, out_mu = access.zeros(lse_buf), access.zeros(mu_buf)
        out_omm, out_theta = access.zeros(omm_buf), access.zeros(theta_buf)
        for f0, f1, i0, i1 in self.chunks(bucket, heads, max(xq.size(2), dim_v)):
            key = bk[f0:f1].transpose(1, 2)
            query = bq[f0:f1, i0:i1].transpose(1, 2)
            value = bv[f0:f1].transpose(1, 2)
            logits = self.scores(bucket, access, query, key, bpos, bias, f0, f1, i0, i1)
            lse = torch.logsumexp(logits, dim=-1)                     # [F, H, rows]
            attn = logits.sub_(lse.unsqueeze(-1)).exp_()
            theta = torch.matmul(attn, value)                         # [F, H, rows, dv]
            out_theta[f0:f1, i0:i1] = theta.transpose(1, 2)
            lse = lse.transpose(1, 2)                                 # [F, rows, H]
            out_lse[f0:f1, i0:i1] = lse
            phi_inf, first = self.masks(bucket, access, f0, f1, i0, i1, lse.device)
            child_phi = None if bphi is None else bphi[f0:f1, i0:i1]
            mu, omm, term = self.mu_terms(lse, child_phi, phi_inf, first)
            out_mu[f0:f1, i0:i1] = mu
            out_omm[f0:f1, i0:i1] = omm
            weight = self.family_weights(bucket, f0, f1, lse.dtype)
            if term is not None:
                if weight is None:
                    part = term.sum(1) / bucket.size
                else:
                    part = (term * weight[:, i0:i1].unsqueeze(-1)).sum(1)
                fam_phi[fs + f0:fs + f1].sub_(part)
            if i0 == 0:  # parent statistics: n-weighted means of the children
                for src, dst in ((bq, fam_q), (bk, fam_k), (bv, fam_v)):
                    blk = src[f0:f1]
                    if weight is None:
                        dst[fs + f0:fs + f1] = blk.mean(1)
                    else:
                        dst[fs + f0:fs + f1] = (blk * weight.view(f1 - f0, -1, 1, 1)).sum(1)
        for buf, local in ((lse_buf, out_lse), (mu_buf, out_mu), (omm_buf, out_omm),
                           (theta_buf, out_theta)):
            access.commit(buf, local)

    def down_bucket(self, bucket: Bucket, acc_fam, weight_fam, mu_buf, omm_buf,
                    theta_buf, acc_buf, weight_buf):
        c0, c1 = bucket.child_start, bucket.child_end
        fs, fe = bucket.family_start, bucket.family_end
        if bucket.index is None:
            f, b = bucket.num_families, bucket.size
            acc_p = acc_fam[fs:fe].unsqueeze(1)                  # [F, 1, H, dv]
            w_p = weight_fam[fs:fe].unsqueeze(1)                 # [F, 1, H]
            coef = (w_p * omm_buf[c0:c1].view(f, b, -1)).unsqueeze(-1)
            torch.addcmul(acc_p, coef, theta_buf[c0:c1].view(f, b, *theta_buf.shape[1:]),
                          out=acc_buf[c0:c1].view(f, b, *acc_buf.shape[1:]))
            torch.mul(w_p, mu_buf[c0:c1].view(f, b, -1),
                      out=weight_buf[c0:c1].view(f, b, -1))
            return
        family = _padded_family(bucket)
        acc_p, w_p = acc_fam[fs + family], weight_fam[fs + family]
        acc_buf[c0:c1] = torch.addcmul(acc_p, (w_p * omm_buf[c0:c1]).unsqueeze(-1),
                                       theta_buf[c0:c1])
        weight_buf[c0:c1] = w_p * mu_buf[c0:c1]

    # ------------------------------------------------------------ backward
    def backward(self, grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor,
                 pos: Optional[Tensor], bias: Optional[Tensor], state, needs):
        h = self.h
        levels = h.levels
        saved, weights = state
        heads = q.size(1)
        if h.leaf_perm is not None:
            grad_out = grad_out[h.leaf_perm]
            q, k, v = q[h.leaf_perm], k[h.leaf_perm], v[h.leaf_perm]
        # ---- pass 1, bottom-up: gradients of acc and w for every node
        g_acc = grad_out
        g_w = None
        if self.include_self:
            g_w = torch.linalg.vecdot(grad_out, v)
        pass_one = []
        for depth in range(len(levels) - 1):
            level, upper = levels[depth], levels[depth + 1]
            _, _, _, _, _, mu, omm, theta = saved[depth]
            num_kids = level.num_children
            d = _rowdot(g_acc[:num_kids], theta)                       # [C, H]
            g_wk = d * omm if g_w is None else d * omm + g_w[:num_kids] * mu
            num_fam = upper.num_nodes
            fam_acc = g_acc.new_zeros(num_fam, heads, g_acc.size(-1))
            fam_w = g_acc.new_zeros(num_fam, heads)
            for bucket in level.buckets:
                _family_sum(bucket, g_acc, fam_acc)
                _family_sum(bucket, g_wk, fam_w)
            pass_one.append((g_acc, g_w, d))
            g_acc = _take(fam_acc, upper.family_of_child, upper.num_children)
            g_w = _take(fam_w, upper.family_of_child, upper.num_children)

        # ---- pass 2, top-down: gradients of the statistics
        grad_pos = None if pos is None else torch.zeros_like(pos)
        grad_bias = None if bias is None else torch.zeros_like(bias)
        top = levels[-1]
        g_q = q.new_zeros(top.num_nodes, heads, q.size(-1))
        g_k = torch.zeros_like(g_q)
        g_v = q.new_zeros(top.num_nodes, heads, v.size(-1))
        g_phi = q.new_zeros(top.num_nodes, heads) if self.track_phi else None
        for depth in range(len(levels) - 2, -1, -1):
            level, upper = levels[depth], levels[depth + 1]
            xq, xk, xv, phi, lse, mu, omm, theta = saved[depth]
            if depth == 0:
                xq, xk, xv = q, k, v
            g_acc, g_w, d = pass_one[depth]
            par = level.parent_position
            fam = (_take(g_q, par, upper.num_nodes), _take(g_k, par, upper.num_nodes),
                   _take(g_v, par, upper.num_nodes),
                   None if g_phi is None else _take(g_phi, par, upper.num_nodes),
                   _take(weights[depth + 1], par, upper.num_nodes))
            rows = level.num_nodes
            g_q = q.new_zeros(rows, heads, q.size(-1))
            g_k = torch.zeros_like(g_q)
            g_v = q.new_zeros(rows, heads, v.size(-1))
            g_phi = q.new_zeros(rows, heads) if self.track_phi else None
            pos_level = None if pos is None else pos[level.rep]
            g_pos_level = None if pos is None else torch.zeros_like(pos_level)
            for bucket in level.buckets:
                self.back_bucket(bucket, fam, (xq, xk, xv, phi, lse, mu, omm, theta),
                                 (g_acc, g_w, d), pos_level, bias,
                                 (g_q, g_k, g_v, g_phi, g_pos_level, grad_bias))
            if depth == 0:
                self.leaf_grads(q, k, v, pos, g_q, g_k, g_v, g_phi, g_pos_level,
                                grad_out, weights[0])
            if grad_pos is not None:
                grad_pos.index_add_(0, level.rep[:rows], g_pos_level[:rows])
        if h.leaf_perm is not None:
            g_q, g_k, g_v = g_q[h.leaf_inv], g_k[h.leaf_inv], g_v[h.leaf_inv]
        return g_q, g_k, g_v, grad_pos, grad_bias

    def leaf_grads(self, q, k, v, pos, g_q, g_k, g_v, g_phi, g_pos, grad_out, weight):
        if not self.include_self:
            return
        # phi(leaf) = -s(i, i) = -(scale q.k + pos.pos); out gains w * v
        g_self = -g_phi.unsqueeze(-1) * self.scale                   # [L, H, 1]
        g_q.addcmul_(g_self, k)
        g_k.addcmul_(g_self, q)
        g_v.addcmul_(weight.unsqueeze(-1), grad_out)
        if pos is not None:
            p = pos[self.h.levels[0].rep]
            if p.dim() == 2:
                g_pos.addcmul_(-2 * g_phi.sum(-1, keepdim=True), p)
            else:
                g_pos.addcmul_(-2 * g_phi.unsqueeze(-1), p)

    def back_bucket(self, bucket: Bucket, fam, stats, pass_one, pos_level, bias, grads):
        gq_p, gk_p, gv_p, gphi_p, w_p = fam
        xq, xk, xv, phi, lse_buf, mu_buf, omm_buf, theta_buf = stats
        g_acc, g_w, d_buf = pass_one
        g_q, g_k, g_v, g_phi, g_pos, grad_bias = grads
        fs, fe = bucket.family_start, bucket.family_end
        if bucket.size == 1:  # the child is its parent
            c0, c1 = bucket.child_start, bucket.child_end
            g_q[c0:c1] += gq_p[fs:fe]
            g_k[c0:c1] += gk_p[fs:fe]
            g_v[c0:c1] += gv_p[fs:fe]
            if g_phi is not None:
                g_phi[c0:c1] = gphi_p[fs:fe]
            return
        access = _Access(bucket)
        heads, dim_v = xq.size(1), xv.size(2)
        bq, bk, bv = access.get(xq), access.get(xk), access.get(xv)
        bpos = None if pos_level is None else access.get(pos_level)
        blse, bmu, bomm = access.get(lse_buf), access.get(mu_buf), access.get(omm_buf)
        bacc, bd = access.get(g_acc), access.get(d_buf)
        bgw = None if g_w is None else access.get(g_w)
        out_q, out_k, out_v = access.zeros(g_q), access.zeros(g_k), access.zeros(g_v)
        out_phi = None if g_phi is None else access.zeros(g_phi)
        out_pos = None if g_pos is None else access.zeros(g_pos)
        for f0, f1, i0, i1 in self.chunks(bucket, heads, max(xq.size(2), dim_v)):
            nf = f1 - f0
            key = bk[f0:f1].transpose(1, 2)
            query = bq[f0:f1, i0:i1].transpose(1, 2)
            value = bv[f0:f1].transpose(1, 2)
            logits = self.scores(bucket, access, query, key, bpos, bias, f0, f1, i0, i1)
            lse = blse[f0:f1, i0:i1]                                  # [F, rows, H]
            attn = logits.sub_(lse.transpose(1, 2).unsqueeze(-1)).exp_()
            mu, omm = bmu[f0:f1, i0:i1], bomm[f0:f1, i0:i1]
            wp = w_p[fs + f0:fs + f1].unsqueeze(1)                    # [F, 1, H]
            d = bd[f0:f1, i0:i1]
            gw = 0.0 if bgw is None else bgw[f0:f1, i0:i1]
            g_x = mu * omm * wp * (gw - d)                            # d/d(eta - phi)
            g_lse = -g_x
            weight = self.family_weights(bucket, f0, f1, lse.dtype)
            if gphi_p is not None:
                gpp = gphi_p[fs + f0:fs + f1].unsqueeze(1)            # [F, 1, H]
                wr = (1.0 / bucket.size if weight is None
                      else weight[:, i0:i1].unsqueeze(-1))
                g_lse = g_lse - wr * omm * gpp
                out_phi[f0:f1, i0:i1] = -g_x + wr * mu * gpp
            coef = (wp * omm).transpose(1, 2).unsqueeze(-1)           # [F, H, rows, 1]
            g_theta = coef * bacc[f0:f1, i0:i1].transpose(1, 2)       # [F, H, rows, dv]
            theta_dot = (wp * omm * d).transpose(1, 2)                # g_theta . theta
            g_attn = torch.matmul(g_theta, value.transpose(-1, -2))   # [F, H, rows, b]
            g_logits = attn * g_attn.add_((g_lse.transpose(1, 2) - theta_dot).unsqueeze(-1))
            out_v[f0:f1] += torch.matmul(attn.transpose(-1, -2), g_theta).transpose(1, 2)
            out_q[f0:f1, i0:i1] += torch.matmul(g_logits, key).mul_(self.scale).transpose(1, 2)
            out_k[f0:f1] += torch.matmul(g_logits.transpose(-1, -2),
                                         query).mul_(self.scale).transpose(1, 2)
            if bpos is not None:
                p_all = bpos[f0:f1]
                p_rows = p_all[:, i0:i1]
                if p_all.dim() == 3:
                    gl = g_logits.sum(1)                              # [F, rows, b]
                    out_pos[f0:f1, i0:i1] += torch.matmul(gl, p_all)
                    out_pos[f0:f1] += torch.matmul(gl.transpose(-1, -2), p_rows)
                else:
                    ph_all, ph_rows = p_all.transpose(1, 2), p_rows.transpose(1, 2)
                    out_pos[f0:f1, i0:i1] += torch.matmul(g_logits, ph_all).transpose(1, 2)
                    out_pos[f0:f1] += torch.matmul(g_logits.transpose(-1, -2),
                                                   ph_rows).transpose(1, 2)
            if bias is not None:
                self.bias_grad(bucket, grad_bias, g_logits, f0, f1, i0, i1)
            if i0 == 0:  # the parents' statistics are means of the children
                for gp, out in ((gq_p, out_q), (gk_p, out_k), (gv_p, out_v)):
                    gpar = gp[fs + f0:fs + f1].unsqueeze(1)
                    if weight is None:
                        out[f0:f1] += gpar / bucket.size
                    else:
                        out[f0:f1] += gpar * weight.view(nf, -1, 1, 1)
        for buf, local in ((g_q, out_q), (g_k, out_k), (g_v, out_v)):
            access.commit(buf, local, accumulate=True)
        if out_phi is not None:
            access.commit(g_phi, out_phi)
        if out_pos is not None:
            access.commit(g_pos, out_pos, accumulate=True)


def _take(x: Tensor, index: Optional[Tensor], count: int) -> Tensor:
    return x[:count] if index is None else x[index]


def _padded_family(bucket: Bucket) -> Tensor:
    r"""Family (relative to the bucket) of each child of a padded bucket."""
    valid = bucket.index < (bucket.child_end - bucket.child_start)
    fam = torch.arange(bucket.num_families, device=valid.device)
    return fam.view(-1, 1).expand_as(valid)[valid]


def _family_sum(bucket: Bucket, x: Tensor, out: Tensor):
    r"""``out[family] += sum of x over the family's children``."""
    c0, c1 = bucket.child_start, bucket.child_end
    fs, fe = bucket.family_start, bucket.family_end
    if bucket.index is None:
        out[fs:fe] += x[c0:c1].view(bucket.num_families, bucket.size,
                                    *x.shape[1:]).sum(1)
    else:
        out.index_add_(0, fs + _padded_family(bucket), x[c0:c1])


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    r"""``(a * b).sum(-1)`` in chunks, without a full-size temporary."""
    out = a.new_empty(a.shape[:-1])
    budget = _CPU_ROW_ELEMENTS if a.device.type == 'cpu' else _GPU_ROW_ELEMENTS
    step = max(1, budget // max(1, a.shape[1:].numel()))
    for i in range(0, a.size(0), step):
        out[i:i + step] = torch.linalg.vecdot(a[i:i + step], b[i:i + step])
    return out


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
