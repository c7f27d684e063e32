r"""The engine behind :func:`hsa_geo.hsa`: the level-synchronous dynamic
program, forward and hand-written backward (see :mod:`hsa_geo.functional` for
the mathematics).

Layout.  Level ``h`` holds the nodes of height ``h`` (see
:class:`hsa_geo.Hierarchy`).  Per-node buffers of level 0 are stored in the
user's leaf order; those of higher levels in level order.  ``_Access`` maps a
bucket's children onto those rows: plain views when the bucket's children are
stored contiguously, chunk-sized gathers and scatters through the leaf
permutation otherwise, so no full-size permuted copy of q, k, v or the output
is ever made.

Every family chunk is a dense ``[F, heads, rows, b]`` block of scores; chunks
are sized to stay in cache on the CPU.  The backward pass recomputes those
blocks from the saved per-node statistics (-eta as ``lse``, ``mu``, ``1 - mu``,
``theta``, ``w``) instead of storing them, so memory stays :math:`O(N d)`.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from hsa_geo.hierarchy import Bucket, Hierarchy

# Elements per [rows, heads, d] chunk tensor and per score block: on the CPU
# small enough to stay in cache, large enough for efficient batched GEMMs.
CPU_ROW_ELEMENTS = 1 << 19
CPU_SCORE_ELEMENTS = 1 << 20
GPU_ROW_ELEMENTS = 1 << 27
GPU_SCORE_ELEMENTS = 1 << 28


class Access:
    r"""Reads and writes one bucket's children, ``[F, b, ...]`` at a time.

    Args:
        bucket: The bucket.
        row_map: For level 0, the storage row (user leaf index) of each level
            position, or :obj:`None` when they coincide.
    """
    def __init__(self, bucket: Bucket, row_map: Optional[Tensor]):
        self.bucket = bucket
        self.row_map = row_map
        if bucket.index is not None:
            self.valid = bucket.index < (bucket.child_end - bucket.child_start)
            rows = bucket.child_start + torch.where(self.valid, bucket.index, 0)
            self.rows = rows if row_map is None else row_map[rows]     # [F, b]
            self.padding = ~self.valid
            self.targets = self.rows.view(-1).index_select(0, bucket.child_slots)

    def chunk_rows(self, f0: int, f1: int, i0: int, i1: int) -> Tensor:
        r"""Storage rows of the children ``i0:i1`` of families ``f0:f1``
        (partial rows only occur for a single family, see :meth:`Plan.chunks`)."""
        b = self.bucket
        lo = b.child_start + f0 * b.size
        if i0 == 0 and i1 == b.size:
            return self.row_map[lo:b.child_start + f1 * b.size]
        return self.row_map[lo + i0:lo + i1]

    def load(self, x: Tensor, f0: int, f1: int) -> Tensor:
        r"""Families ``f0:f1`` as ``[F, b, ...]`` (a view when possible)."""
        b = self.bucket
        if b.index is not None:  # one chunk: the whole padded bucket
            out = x.index_select(0, self.rows.view(-1)).view(b.num_families, b.size,
                                                             *x.shape[1:])
            return out.masked_fill_(self.padding.view(self.padding.shape + (1, ) *
                                                      (x.dim() - 1)), 0)
        if self.row_map is None:
            lo = b.child_start + f0 * b.size
            return x[lo:b.child_start + f1 * b.size].view(f1 - f0, b.size, *x.shape[1:])
        rows = self.chunk_rows(f0, f1, 0, b.size)
        return x.index_select(0, rows).view(f1 - f0, b.size, *x.shape[1:])

    def store(self, x: Tensor, value: Tensor, f0: int, f1: int, i0: int, i1: int,
              accumulate: bool = False):
        r"""Writes (or adds) ``value``, ``[F, rows, ...]``, to the children
        rows ``i0:i1`` of families ``f0:f1``."""
        b = self.bucket
        if b.index is not None:  # one chunk, all rows: the whole padded bucket
            flat = value.reshape(-1, *x.shape[1:]).index_select(0, b.child_slots)
            if accumulate:
                x.index_add_(0, self.targets, flat)
            else:
                x.index_copy_(0, self.targets, flat)
            return
        if self.row_map is None:
            lo = b.child_start + f0 * b.size
            view = x[lo:b.child_start + f1 * b.size].view(f1 - f0, b.size,
                                                         *x.shape[1:])[:, i0:i1]
            if accumulate:
                view.add_(value)
            else:
                view.copy_(value)
            return
        rows = self.chunk_rows(f0, f1, i0, i1)
        flat = value.reshape(-1, *x.shape[1:])
        if accumulate:
            x.index_add_(0, rows, flat)
        else:
            x.index_copy_(0, rows, flat)


class Plan:
    r"""One call's configuration (hierarchy, flags, chunk sizes) and the
    forward and backward passes."""
    def __init__(self, hierarchy: Hierarchy, include_self: bool, causal: bool,
                 scale: float, device: torch.device):
        self.h = hierarchy
        self.include_self = include_self
        self.causal = causal
        self.scale = scale
        # phi = +inf is structural: nowhere with include_self, everywhere for
        # causal attention without self, else exactly at single-leaf subtrees.
        self.phi_mode = 'none' if include_self else ('all' if causal else 'single')
        self.track_phi = self.phi_mode != 'all'
        # Without a backward pass, theta's buffers are overwritten in place by
        # the top-down pass (saves a buffer of the output's size).
        self.keep_for_backward = True
        on_gpu = device.type != 'cpu'
        self.row_budget = GPU_ROW_ELEMENTS if on_gpu else CPU_ROW_ELEMENTS
        self.score_budget = GPU_SCORE_ELEMENTS if on_gpu else CPU_SCORE_ELEMENTS
        self._masks = {}
        # when set to a [num_pairs, heads] tensor, the bottom-up pass writes
        # the block weights delta of every sibling pair into it
        self.pair_weights: Optional[Tensor] = None
        # attention dropout on the sibling weights (the block weights delta);
        # the keep masks are kept for the backward pass
        self.dropout = 0.0
        self.dropout_keep = {}

    # ------------------------------------------------------------ chunking
    def row_map(self, depth: int) -> Optional[Tensor]:
        return self.h.leaf_perm if depth == 0 else None

    def chunks(self, bucket: Bucket, heads: int, width: int):
        r"""Yields ``(f0, f1, i0, i1)``: families ``f0:f1`` of the bucket and
        their query rows ``i0:i1``."""
        b, num = bucket.size, bucket.num_families
        if bucket.index is not None:
            yield 0, num, 0, b
            return
        fam = min(self.row_budget // max(1, heads * width * b),
                  self.score_budget // max(1, heads * b * b))
        if fam >= 1:
            for f0 in range(0, num, fam):
                yield f0, min(num, f0 + fam), 0, b
            return
        rows = max(1, self.score_budget // (heads * b))
        for f0 in range(num):
            for i0 in range(0, b, rows):
                yield f0, f0 + 1, i0, min(b, i0 + rows)

    def family_chunks(self, bucket: Bucket, heads: int, width: int):
        r"""Like :meth:`chunks`, each family range once (all rows)."""
        for f0, f1, i0, _ in self.chunks(bucket, heads, width):
            if i0 == 0:
                yield f0, f1, bucket.size

    # ------------------------------------------------------------- helpers
    def masks(self, bucket: Bucket, f0: int, f1: int, i0: int, i1: int, device):
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

    def scores(self, bucket: Bucket, query: Tensor, key: Tensor,
               pos_block: Optional[Tensor], bias: Optional[Tensor], f0: int,
               f1: int, i0: int, i1: int) -> Tensor:
        r"""``[F, heads, rows, b]`` masked logits of the chunk, including the
        :math:`\log n(B)` weights."""
        b = bucket.size
        logits = torch.matmul(query, key.transpose(-1, -2)).mul_(self.scale)
        if pos_block is not None:
            p_rows = pos_block[:, i0:i1]
            if pos_block.dim() == 3:    # shared by the heads: [F, b, c]
                logits.add_(torch.matmul(p_rows, pos_block.transpose(-1, -2)).unsqueeze(1))
            else:                       # per head: [F, b, H, c]
                logits.add_(torch.matmul(p_rows.transpose(1, 2),
                                         pos_block.permute(0, 2, 3, 1)))
        if bias is not None:
            logits.add_(self.bias_block(bucket, bias, f0, f1, i0, i1))
        logits.add_(self.mask(b, i0, i1, logits.dtype, logits.device))
        if not (bucket.unit and bucket.index is None):
            count = bucket.leaf_count[f0:f1].to(logits.dtype)
            logits.add_(count.log().view(f1 - f0, 1, 1, b))
        return logits

    def mask(self, b: int, i0: int, i1: int, dtype, device) -> Tensor:
        r"""``[rows, b]``: 0 where row ``i`` may attend sibling ``j``, else -inf.

        With ``causal``, the first child has no sibling to attend to; its row
        keeps the (0, 0) entry open so that no row is all -inf (its results are
        discarded through ``mu = 1``), which keeps both passes free of NaN."""
        key = (b, i0, i1, dtype, device)
        # under torch.compile the cache would leak traced tensors: no caching
        if key not in self._masks or torch.compiler.is_compiling():
            rows = torch.arange(i0, i1, device=device).view(-1, 1)
            cols = torch.arange(b, device=device).view(1, -1)
            if self.causal:
                allowed = (cols < rows) | ((rows == 0) & (cols == 0))
            else:
                allowed = cols != rows
            mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
            mask = mask.masked_fill_(~allowed, -math.inf)
            if torch.compiler.is_compiling():
                return mask
            self._masks[key] = mask
        return self._masks[key]

    def bias_block(self, bucket: Bucket, bias: Tensor, f0: int, f1: int, i0: int,
                   i1: int) -> Tensor:
        r"""``[F, heads or 1, rows, b]`` pair biases (zero on the diagonal)."""
        b, num = bucket.size, f1 - f0
        trailing = bias.shape[1:]
        if bucket.pair_index is not None:  # padded: the whole bucket, all rows
            block = bias.new_zeros((num * b * b, ) + trailing)
            block.index_copy_(0, bucket.pair_slots,
                              bias[bucket.pair_start:bucket.pair_end])
            block = block.view(num, b, b, *trailing)
        else:
            per = b * (b - 1)
            start = bucket.pair_start + f0 * per
            vals = bias[start:start + num * per].view(num, b, b - 1, *trailing)
            vals = vals[:, i0:i1].reshape(num, (i1 - i0) * (b - 1), *trailing)
            block = bias.new_zeros((num, i1 - i0, b) + trailing)
            block[:, _offdiag(b, i0, i1, bias.device)] = vals
        if trailing:
            return block.permute(0, 3, 1, 2)
        return block.unsqueeze(1)

    def bias_grad(self, bucket: Bucket, grad_bias: Tensor, grad_logits: Tensor,
                  f0: int, f1: int, i0: int, i1: int):
        r"""Adds the chunk's ``[F, heads, rows, b]`` logit gradient to the
        pair-bias gradient."""
        g = grad_logits.sum(1) if grad_bias.dim() == 1 else grad_logits.permute(0, 2, 3, 1)
        b, num = bucket.size, f1 - f0
        if bucket.pair_index is not None:  # padded: the whole bucket, all rows
            flat = g.reshape(num * b * b, *g.shape[3:]).index_select(0, bucket.pair_slots)
            grad_bias[bucket.pair_start:bucket.pair_end] += flat
            return
        per = b * (b - 1)
        vals = g[:, _offdiag(b, i0, i1, g.device)]              # [F, rows*(b-1), ...]
        target = grad_bias[bucket.pair_start + f0 * per:bucket.pair_start + f1 * per]
        target = target.view(num, b, b - 1, *grad_bias.shape[1:])[:, i0:i1]
        target.add_(vals.view(num, i1 - i0, b - 1, *grad_bias.shape[1:]))

    def drop(self, attn: Tensor, bucket: Bucket, f0: int, i0: int) -> Tensor:
        r"""Dropout on the sibling attention weights of a chunk (so on the
        block weights delta; eta, mu and phi keep the undropped statistics)."""
        if self.dropout <= 0:
            return attn
        keep = torch.rand_like(attn) >= self.dropout
        if self.keep_for_backward:
            self.dropout_keep[(id(bucket), f0, i0)] = keep
        return attn * keep / (1 - self.dropout)

    def store_pair_weights(self, bucket: Bucket, attn: Tensor, omm: Tensor, f0: int,
                           f1: int, i0: int, i1: int):
        r"""delta(B, C) = (1 - mu(B)) exp(s(B, C) + eta(B)) = (1 - mu(B)) *
        attn(B, C) / n(C) for the chunk's pairs, into :attr:`pair_weights`."""
        count = bucket.leaf_count[f0:f1].to(attn.dtype)               # [F, b]
        delta = attn * omm.transpose(1, 2).unsqueeze(-1)              # [F, H, rows, b]
        delta = delta / count.clamp(min=1).view(f1 - f0, 1, 1, -1)
        delta = delta.permute(0, 2, 3, 1)                             # [F, rows, b, H]
        out, b, num = self.pair_weights, bucket.size, f1 - f0
        if bucket.pair_index is not None:
            flat = delta.reshape(num * b * b, -1).index_select(0, bucket.pair_slots)
            out[bucket.pair_start:bucket.pair_end] = flat
            return
        per = b * (b - 1)
        vals = delta[:, _offdiag(b, i0, i1, delta.device)]            # [F, rows*(b-1), H]
        target = out[bucket.pair_start + f0 * per:bucket.pair_start + f1 * per]
        target.view(num, b, b - 1, -1)[:, i0:i1] = vals.view(num, i1 - i0, b - 1, -1)

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
        if first is not None:  # no left sibling: eta = +inf, term = -phi
            m = first.view(1, -1, 1)
            mu = mu.masked_fill(m, 1.0)
            omm = omm.masked_fill(m, 0.0)
            if term is not None:
                term = torch.where(m, -phi, term)
        return mu, omm, term

    @staticmethod
    def family_weights(bucket: Bucket, f0: int, f1: int, dtype) -> Optional[Tensor]:
        r"""``n(C) / n(P)`` of the chunk's children as ``[F, b]`` (None when
        all children are single leaves of an exact bucket: then 1/b)."""
        if bucket.unit and bucket.index is None:
            return None
        count = bucket.leaf_count[f0:f1].to(dtype)
        return count / count.sum(1, keepdim=True)

    def level_pos(self, pos: Optional[Tensor], depth: int) -> Optional[Tensor]:
        r"""Position vectors of a level's nodes in its storage order."""
        if pos is None:
            return None
        if depth == 0:
            return pos[:self.h.num_leaves]
        return pos[self.h.levels[depth].rep]

    def self_score(self, q: Tensor, k: Tensor, pos: Optional[Tensor]) -> Tensor:
        r"""``s(i, i)`` of every leaf, ``[num_leaves, heads]``."""
        score = torch.linalg.vecdot(q, k) * self.scale
        if pos is not None:
            p = pos[:self.h.num_leaves]
            pp = torch.linalg.vecdot(p, p)
            score = score + (pp.unsqueeze(-1) if p.dim() == 2 else pp)
        return score

    # ------------------------------------------------------------- forward
    def forward(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor],
                bias: Optional[Tensor]):
        levels = self.h.levels
        heads, dim, dim_v = q.size(1), q.size(2), v.size(2)
        xq, xk, xv = q, k, v
        phi = None
        if self.include_self:
            phi = -self.self_score(q, k, pos)
        elif self.phi_mode == 'single':
            phi = q.new_zeros(q.shape[:2])  # every leaf has phi = +inf (masked)

        saved = []
        for depth in range(len(levels) - 1):
            level, upper = levels[depth], levels[depth + 1]
            rows = level.num_nodes
            lse = q.new_zeros(rows, heads)
            mu = q.new_ones(rows, heads)
            omm = q.new_zeros(rows, heads)
            theta = q.new_empty(rows, heads, dim_v)
            if level.num_roots or any(b.size == 1 for b in level.buckets):
                theta.zero_()  # roots and lone children keep theta = 0
            num_fam = upper.num_nodes
            fam_q = q.new_empty(num_fam, heads, dim)
            fam_k = q.new_empty(num_fam, heads, dim)
            fam_v = q.new_empty(num_fam, heads, dim_v)
            fam_phi = q.new_zeros(num_fam, heads) if self.track_phi else None
            pos_level = self.level_pos(pos, depth)
            for bucket in level.buckets:
                self.up_bucket(bucket, Access(bucket, self.row_map(depth)),
                               (xq, xk, xv, phi), pos_level, bias,
                               (lse, mu, omm, theta), (fam_q, fam_k, fam_v, fam_phi))
            # level 0's statistics are the inputs themselves: not kept twice
            kept = (None, None, None) if depth == 0 else (xq, xk, xv)
            saved.append(kept + (phi, lse, mu, omm, theta))
            select = upper.family_of_child
            xq = _take(fam_q, select, upper.num_children)
            xk = _take(fam_k, select, upper.num_children)
            xv = _take(fam_v, select, upper.num_children)
            phi = None if fam_phi is None else _take(fam_phi, select, upper.num_children)

        top = levels[-1]
        acc = q.new_zeros(top.num_nodes, heads, dim_v)
        weight = q.new_ones(top.num_nodes, heads)
        weights = [weight]
        for depth in range(len(levels) - 2, -1, -1):
            level, upper = levels[depth], levels[depth + 1]
            _, _, _, _, _, mu, omm, theta = saved[depth]
            acc_fam = _take(acc, level.parent_position, upper.num_nodes)
            weight_fam = _take(weight, level.parent_position, upper.num_nodes)
            if self.keep_for_backward:
                acc = torch.empty_like(theta)
                if level.num_roots:
                    acc.zero_()
            else:
                acc = theta  # consumed in place
            weight = q.new_ones(level.num_nodes, heads)
            for bucket in level.buckets:
                self.down_bucket(bucket, Access(bucket, self.row_map(depth)), heads,
                                 acc_fam, weight_fam, (mu, omm, theta), acc, weight)
            weights.append(weight)
        weights.reverse()
        out = acc
        if self.include_self:
            out.addcmul_(weights[0].unsqueeze(-1), v)
        return out, (saved, weights)

    def up_bucket(self, bucket: Bucket, access: Access, stats, pos_level, bias,
                  outputs, family_stats):
        xq, xk, xv, phi = stats
        lse_buf, mu_buf, omm_buf, theta_buf = outputs
        fam_q, fam_k, fam_v, fam_phi = family_stats
        fs = bucket.family_start
        heads, dim_v = xq.size(1), xv.size(2)
        for f0, f1, i0, i1 in self.chunks(bucket, heads, max(xq.size(2), dim_v)):
            # head-major copies [F, H, b, d]: contiguous for the batched GEMMs
            # and cache-hot for the parents' means
            key, value = _heads_first(access.load(xk, f0, f1)), \
                _heads_first(access.load(xv, f0, f1))
            query = _heads_first(access.load(xq, f0, f1))
            weight = self.family_weights(bucket, f0, f1, xq.dtype)
            if i0 == 0:  # parent statistics: n-weighted means of the children
                for blk, dst in ((query, fam_q), (key, fam_k), (value, fam_v)):
                    if weight is None:
                        torch.mean(blk, 2, out=dst[fs + f0:fs + f1])
                    else:
                        torch.sum(blk * weight.view(f1 - f0, 1, -1, 1), 2,
                                  out=dst[fs + f0:fs + f1])
            if bucket.size == 1:  # a lone child: no sibling, mu = 1, theta = 0
                if fam_phi is not None:
                    fam_phi[fs + f0:fs + f1] = access.load(phi, f0, f1)[:, 0]
                continue
            pos_block = None if pos_level is None else access.load(pos_level, f0, f1)
            logits = self.scores(bucket, query[:, :, i0:i1], key, pos_block, bias,
                                 f0, f1, i0, i1)
            attn, lse = _softmax_(logits)
            theta = torch.matmul(self.drop(attn, bucket, f0, i0), value)  # [F, H, rows, dv]
            access.store(theta_buf, theta.transpose(1, 2), f0, f1, i0, i1)
            lse = lse.transpose(1, 2)                                 # [F, rows, H]
            access.store(lse_buf, lse, f0, f1, i0, i1)
            phi_inf, first = self.masks(bucket, f0, f1, i0, i1, lse.device)
            child_phi = None if phi is None else access.load(phi, f0, f1)[:, i0:i1]
            mu, omm, term = self.mu_terms(lse, child_phi, phi_inf, first)
            access.store(mu_buf, mu, f0, f1, i0, i1)
            access.store(omm_buf, omm, f0, f1, i0, i1)
            if self.pair_weights is not None:
                self.store_pair_weights(bucket, attn, omm, f0, f1, i0, i1)
            if term is not None:
                if weight is None:
                    part = term.sum(1) / bucket.size
                else:
                    part = (term * weight[:, i0:i1].unsqueeze(-1)).sum(1)
                fam_phi[fs + f0:fs + f1].sub_(part)

    def down_bucket(self, bucket: Bucket, access: Access, heads: int, acc_fam,
                    weight_fam, stats, acc_buf, weight_buf):
        mu_buf, omm_buf, theta_buf = stats
        fs = bucket.family_start
        for f0, f1, _ in self.family_chunks(bucket, heads, theta_buf.size(-1)):
            acc_p = acc_fam[fs + f0:fs + f1].unsqueeze(1)             # [F, 1, H, dv]
            w_p = weight_fam[fs + f0:fs + f1].unsqueeze(1)            # [F, 1, H]
            coef = (w_p * access.load(omm_buf, f0, f1)).unsqueeze(-1)
            acc = torch.addcmul(acc_p, coef, access.load(theta_buf, f0, f1))
            access.store(acc_buf, acc, f0, f1, 0, bucket.size)
            access.store(weight_buf, w_p * access.load(mu_buf, f0, f1), f0, f1,
                         0, bucket.size)

    # ------------------------------------------------------------ backward
    def backward(self, grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor,
                 pos: Optional[Tensor], bias: Optional[Tensor], state):
        levels = self.h.levels
        saved, weights = state
        heads = q.size(1)
        # ---- pass 1, bottom-up: gradients of acc and w of every node
        g_acc = grad_out
        g_w = torch.linalg.vecdot(grad_out, v) if self.include_self else None
        pass_one = []
        for depth in range(len(levels) - 1):
            level, upper = levels[depth], levels[depth + 1]
            _, _, _, _, _, mu, omm, theta = saved[depth]
            d = _rowdot(g_acc, theta)                                  # [rows, H]
            g_wk = d * omm if g_w is None else d * omm + g_w * mu
            fam_acc = g_acc.new_zeros(upper.num_nodes, heads, g_acc.size(-1))
            fam_w = g_acc.new_zeros(upper.num_nodes, heads)
            for bucket in level.buckets:
                access = Access(bucket, self.row_map(depth))
                _family_sum(bucket, access, g_acc, fam_acc, self)
                _family_sum(bucket, access, g_wk, fam_w, self)
            pass_one.append((g_acc, g_w, d))
            # the next level's rows: its children, then its roots (no gradient)
            g_acc = _take(fam_acc, upper.family_of_child, upper.num_children)
            g_w = _take(fam_w, upper.family_of_child, upper.num_children)
            if upper.num_roots:
                g_acc = torch.cat([g_acc, g_acc.new_zeros(upper.num_roots, *g_acc.shape[1:])])
                g_w = torch.cat([g_w, g_w.new_zeros(upper.num_roots, heads)])

        # ---- pass 2, top-down: gradients of the statistics
        grad_pos = None if pos is None else torch.zeros_like(pos)
        grad_bias = None if bias is None else torch.zeros_like(bias)
        top = levels[-1]
        g_q = q.new_zeros(top.num_nodes, heads, q.size(-1))
        g_k = torch.zeros_like(g_q)
        g_v = q.new_zeros(top.num_nodes, heads, v.size(-1))
        g_phi = q.new_zeros(top.num_nodes, heads) if self.track_phi else None
        leaf_pos_grad = None
        for depth in range(len(levels) - 2, -1, -1):
            level, upper = levels[depth], levels[depth + 1]
            xq, xk, xv, phi, lse, mu, omm, theta = saved[depth]
            if depth == 0:
                xq, xk, xv = q, k, v
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
            pos_level = self.level_pos(pos, depth)
            g_pos = None if pos is None else torch.zeros_like(pos_level)
            for bucket in level.buckets:
                self.back_bucket(bucket, Access(bucket, self.row_map(depth)), fam,
                                 (xq, xk, xv, phi, lse, mu, omm), pass_one[depth],
                                 pos_level, bias, (g_q, g_k, g_v, g_phi, g_pos, grad_bias))
            if depth == 0:
                leaf_pos_grad = g_pos
            elif grad_pos is not None:
                grad_pos.index_add_(0, level.rep, g_pos)
        # the leaves' own terms; with a single level (every tree a lone leaf)
        # these are the only ones: out = w v with w = 1 under include_self
        if leaf_pos_grad is None and pos is not None:
            leaf_pos_grad = torch.zeros_like(pos[:self.h.num_leaves])
        self.leaf_grads(q, k, v, pos, (g_q, g_k, g_v, g_phi, leaf_pos_grad), grad_out,
                        weights[0])
        if grad_pos is not None:
            grad_pos[:self.h.num_leaves] += leaf_pos_grad
        return g_q, g_k, g_v, grad_pos, grad_bias

    def leaf_grads(self, q, k, v, pos, grads, grad_out, weight):
        if not self.include_self:
            return
        g_q, g_k, g_v, g_phi, g_pos = grads
        # phi(leaf) = -s(i, i) = -(scale q.k + pos.pos); the output gains w * v
        g_self = -g_phi.unsqueeze(-1) * self.scale                    # [L, H, 1]
        g_q.addcmul_(g_self, k)
        g_k.addcmul_(g_self, q)
        g_v.addcmul_(weight.unsqueeze(-1), grad_out)
        if pos is not None:
            p = pos[:self.h.num_leaves]
            if p.dim() == 2:
                g_pos.addcmul_(-2 * g_phi.sum(-1, keepdim=True), p)
            else:
                g_pos.addcmul_(-2 * g_phi.unsqueeze(-1), p)

    def back_bucket(self, bucket: Bucket, access: Access, fam, stats, pass_one,
                    pos_level, bias, grads):
        gq_p, gk_p, gv_p, gphi_p, w_p = fam
        xq, xk, xv, phi, lse_buf, mu_buf, omm_buf = stats
        g_acc, g_w, d_buf = pass_one
        g_q, g_k, g_v, g_phi, g_pos, grad_bias = grads
        fs, b = bucket.family_start, bucket.size
        heads, dim_v = xq.size(1), xv.size(2)
        for f0, f1, i0, i1 in self.chunks(bucket, heads, max(xq.size(2), dim_v)):
            nf = f1 - f0
            weight = self.family_weights(bucket, f0, f1, xq.dtype)
            shares = [None, None, None]
            if i1 == b:  # the parents' statistics are means of the children
                for slot, gp in enumerate((gq_p, gk_p, gv_p)):
                    gpar = gp[fs + f0:fs + f1].unsqueeze(1)           # [F, 1, H, d]
                    shares[slot] = (gpar / b if weight is None
                                    else gpar * weight.view(nf, -1, 1, 1))
                if b == 1 or i0 > 0:
                    for share, out in zip(shares, (g_q, g_k, g_v)):
                        access.store(out, share.expand(nf, b, *share.shape[2:]),
                                     f0, f1, 0, b, accumulate=True)
                    shares = [None, None, None]
            if b == 1:  # a lone child: its phi is the parent's
                if g_phi is not None:
                    access.store(g_phi, gphi_p[fs + f0:fs + f1].unsqueeze(1), f0, f1, 0, 1)
                continue
            key, value = _heads_first(access.load(xk, f0, f1)), \
                _heads_first(access.load(xv, f0, f1))
            query = _heads_first(access.load(xq, f0, f1)[:, i0:i1])
            pos_block = None if pos_level is None else access.load(pos_level, f0, f1)
            logits = self.scores(bucket, query, key, pos_block, bias, f0, f1, i0, i1)
            lse = access.load(lse_buf, f0, f1)[:, i0:i1]              # [F, rows, H]
            attn = logits.sub_(lse.transpose(1, 2).unsqueeze(-1)).exp_()
            mu = access.load(mu_buf, f0, f1)[:, i0:i1]
            omm = access.load(omm_buf, f0, f1)[:, i0:i1]
            d = access.load(d_buf, f0, f1)[:, i0:i1]
            wp = w_p[fs + f0:fs + f1].unsqueeze(1)                    # [F, 1, H]
            g_x = mu * omm * wp
            g_x = g_x * (-d if g_w is None else access.load(g_w, f0, f1)[:, i0:i1] - d)
            g_lse = -g_x                                              # x = -lse - phi
            if gphi_p is not None:
                gpp = gphi_p[fs + f0:fs + f1].unsqueeze(1)            # [F, 1, H]
                wr = 1.0 / b if weight is None else weight[:, i0:i1].unsqueeze(-1)
                g_lse = g_lse - wr * omm * gpp
                access.store(g_phi, wr * mu * gpp - g_x, f0, f1, i0, i1)
            coef = wp * omm                                           # [F, rows, H]
            g_theta = _heads_first(coef.unsqueeze(-1) * access.load(g_acc, f0, f1)[:, i0:i1])
            theta_dot = (coef * d).transpose(1, 2)                    # g_theta . theta
            g_attn = torch.matmul(g_theta, value.transpose(-1, -2))   # [F, H, rows, b]
            dropped = attn
            if self.dropout > 0:  # theta used attn * keep / (1 - p)
                scaled_keep = self.dropout_keep[(id(bucket), f0, i0)] / (1 - self.dropout)
                g_attn.mul_(scaled_keep)
                dropped = attn * scaled_keep
            grad_v = torch.matmul(dropped.transpose(-1, -2), g_theta).transpose(1, 2)
            g_logits = attn * g_attn.add_((g_lse.transpose(1, 2) - theta_dot).unsqueeze(-1))
            grad_q = torch.matmul(g_logits, key).mul_(self.scale).transpose(1, 2)
            grad_k = torch.matmul(g_logits.transpose(-1, -2), query).mul_(self.scale)
            grad_k = grad_k.transpose(1, 2)
            for grad, share, out, lo, hi in ((grad_q, shares[0], g_q, i0, i1),
                                             (grad_k, shares[1], g_k, 0, b),
                                             (grad_v, shares[2], g_v, 0, b)):
                if share is not None:  # full rows: one pass over the buffer
                    grad = grad + share
                access.store(out, grad, f0, f1, lo, hi, accumulate=True)
            if pos_block is not None:
                p_rows = pos_block[:, i0:i1]
                if pos_block.dim() == 3:
                    gl = g_logits.sum(1)                              # [F, rows, b]
                    access.store(g_pos, torch.matmul(gl, pos_block), f0, f1, i0, i1, True)
                    access.store(g_pos, torch.matmul(gl.transpose(-1, -2), p_rows),
                                 f0, f1, 0, b, True)
                else:
                    access.store(g_pos, torch.matmul(g_logits, pos_block.transpose(1, 2))
                                 .transpose(1, 2), f0, f1, i0, i1, True)
                    access.store(g_pos, torch.matmul(g_logits.transpose(-1, -2),
                                                     p_rows.transpose(1, 2)).transpose(1, 2),
                                 f0, f1, 0, b, True)
            if bias is not None:
                self.bias_grad(bucket, grad_bias, g_logits, f0, f1, i0, i1)


def _heads_first(block: Tensor) -> Tensor:
    r"""``[F, b, H, d]`` -> contiguous ``[F, H, b, d]``."""
    return block.transpose(1, 2).contiguous()


def _offdiag(b: int, i0: int, i1: int, device) -> Tensor:
    rows = torch.arange(i0, i1, device=device).view(-1, 1)
    return torch.arange(b, device=device).view(1, -1) != rows


def _softmax_(logits: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Softmax over the last dimension in place, and its log-normaliser.
    Every row has a finite entry (see :meth:`Plan.mask`)."""
    peak = logits.amax(-1, keepdim=True)
    total = logits.sub_(peak).exp_().sum(-1, keepdim=True)
    lse = (peak + total.log()).squeeze(-1)
    return logits.div_(total), lse


def _take(x: Tensor, index: Optional[Tensor], count: int) -> Tensor:
    return x[:count] if index is None else x[index]


def _family_sum(bucket: Bucket, access: Access, x: Tensor, out: Tensor, plan: Plan):
    r"""``out[family] += sum of x over the family's children``."""
    fs = bucket.family_start
    heads = x.size(1)
    for f0, f1, _ in plan.family_chunks(bucket, heads, x[0].numel() // heads):
        out[fs + f0:fs + f1] += access.load(x, f0, f1).sum(1)


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    r"""``(a * b).sum(-1)`` in chunks, without a full-size temporary."""
    out = a.new_empty(a.shape[:-1])
    budget = CPU_ROW_ELEMENTS if a.device.type == 'cpu' else GPU_ROW_ELEMENTS
    step = max(1, budget // max(1, a.shape[1:].numel()))
    for i in range(0, a.size(0), step):
        out[i:i + step] = torch.linalg.vecdot(a[i:i + step], b[i:i + step])
    return out
