r"""The hand-written backward pass of the dynamic program.

It keeps only per-node quantities from the forward pass (the node buffer,
:math:`\log` normalisers, :math:`\mu`, :math:`1 - \mu`, :math:`\theta`, the
mass) and recomputes the score blocks, so memory stays :math:`O(N d)`.

**Pass 1, bottom-up**: the gradients of every node's accumulated output and
mass, :math:`g_\text{acc}(P) = \sum_C g_\text{acc}(C)` and
:math:`g_m(P) = \sum_C (1 - \mu(C))\, d(C) + \mu(C)\, g_m(C)` with
:math:`d(C) = g_\text{acc}(C) \cdot \theta(C)`.

**Pass 2, top-down**: the gradients of the statistics.  With :math:`x =
\eta - \phi = \nu - \log Z`, :math:`g_x = m(P)\, \mu (1 - \mu)\, (g_m(C) -
d(C))`; the parent's :math:`\nu(P)`, the mean of
:math:`t = \operatorname{logaddexp}(\nu(C), -\eta(C))`, contributes through
:math:`t`; the softmax and its log-normaliser give :math:`g_s = a \odot (g_a -
g_\theta \cdot \theta + g_{\log Z})`; the means give every child
:math:`n(C)/n(P)` of the parent's gradient.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo.engine import triton_kernels
from hsa_geo.engine.blocks import Config, Dims, Inputs, gather, pair_bias, positions, scores
from hsa_geo.engine.forward import Piece, store_leaves, take_leaves, take_rows
from hsa_geo.engine.layout import Layout
from hsa_geo.engine.recorder import Recorder

__all__ = ['backward']


def _accumulated_grads(layout: Layout, pieces: List[Piece], grad_out: Tensor, v: Tensor,
                       cfg: Config, dims: Dims):
    r"""Pass 1: ``g_acc [H, rows, dv]`` and ``g_mass [H, rows]`` of every
    node (head-major), and per piece :math:`d(C)` and :math:`g_m(C)`,
    ``[H, F, rows]``."""
    num_rows, lifted = layout.num_rows, layout.num_lifted
    g_acc = grad_out.new_empty(dims.heads, num_rows, dims.dim_v)
    g_mass = grad_out.new_empty(dims.heads, num_rows)
    leaf_g_mass = torch.linalg.vecdot(grad_out, v) if cfg.include_self else None  # [L, H]
    if lifted:
        g_acc[:, :lifted] = grad_out[layout.lifted].transpose(0, 1)
        g_mass[:, :lifted] = 0.0 if leaf_g_mass is None else leaf_g_mass[layout.lifted].t()
    g_acc[:, -1] = 0.0
    g_mass[:, -1] = 0.0
    kept = []
    for piece in pieces:  # children before parents
        if piece.size_class.leaves:
            ga = take_leaves(grad_out, piece)                         # [H, F, rows, dv]
            gm = piece.mu.new_zeros(piece.mu.shape) if leaf_g_mass is None else \
                take_leaves(leaf_g_mass, piece)                       # [H, F, rows]
        else:
            ga = take_rows(g_acc, piece)
            gm = take_rows(g_mass, piece)
        dot = torch.linalg.vecdot(ga, piece.theta)
        mass_share = torch.addcmul(piece.mu * gm, piece.one_minus_mu, dot).sum(-1)
        parents = piece.parent_rows
        if piece.i0 == 0:
            g_acc[:, parents] = ga.sum(2)
            g_mass[:, parents] = mass_share
        else:
            g_acc[:, parents] += ga.sum(2)
            g_mass[:, parents] += mass_share
        kept.append((dot, gm))
    return g_acc, g_mass, kept


def backward(layout: Layout, pieces: List[Piece], nodes: Tensor, mass: Tensor,
             leaf_mass: Tensor, inputs: Inputs, bias: Optional[Tensor],
             bias_ext: Optional[Tensor], recorder: Recorder,
             grad_out: Tensor) -> Tuple[Tensor, ...]:
    r"""Gradients of ``q``, ``k``, ``v``, ``pos`` and ``bias``."""
    cfg, dims, pos = inputs.cfg, inputs.dims, inputs.pos
    dim = dims.dim
    g_acc, g_mass, kept = _accumulated_grads(layout, pieces, grad_out, inputs.v, cfg, dims)
    g_nodes = nodes.new_empty(nodes.shape)
    g_nodes.index_fill_(1, layout.root_rows, 0.0)  # roots: statistics used by no one
    # the leaves' statistics gradients, node-major; row L takes the padding
    g_leaves = nodes.new_empty(layout.num_leaves + 1, dims.heads, dims.width)
    grad_pos = None if pos is None else torch.zeros_like(pos)
    grad_bias = None if bias is None else torch.zeros_like(bias_ext)
    dtype = nodes.dtype
    g_block = None
    for piece, (dot, gm) in _top_down_order(pieces, kept):
        # the children's g_acc again: keeping them from pass 1 would hold a
        # second copy of the output gradient for every level
        ga = take_leaves(grad_out, piece) if piece.size_class.leaves else \
            take_rows(g_acc, piece)
        if piece.fused:
            triton_kernels.backward_class(nodes, g_nodes, g_leaves, piece, inputs,
                                          mass[:, piece.parent_rows], ga, dot, gm,
                                          grad_pos, bias_ext, grad_bias, layout.num_pairs,
                                          recorder.seed())
            continue
        c, f0, f1, i0, i1 = piece.size_class, piece.f0, piece.f1, piece.i0, piece.i1
        num, width = f1 - f0, c.width
        parents = piece.parent_rows
        g_parent = g_nodes[:, parents]                                # [H, F, D]
        mass_p = mass[:, parents].unsqueeze(-1)                       # [H, F, 1]
        weight = c.weight_as(dtype)[f0:f1]                              # [F, B]
        block = gather(nodes, inputs, c, f0, f1)                      # [H, F, B, D]
        if i0 == 0:  # the means' share: n(C)/n(P) of the parent's gradient (and g_t)
            g_block = weight.view(1, num, width, 1) * g_parent.unsqueeze(2)
        pos_block = positions(pos, c, f0, f1)
        logits = scores(block, c, cfg, dims, pos_block,
                        pair_bias(bias_ext, c, layout.num_pairs, f0, f1, i0, i1),
                        f0, f1, i0, i1)
        attention = logits.sub_(piece.log_norm.unsqueeze(-1)).exp_()
        keep = recorder.kept(piece.key)
        # theta and the top-down pass
        g_theta = (mass_p * piece.one_minus_mu).unsqueeze(-1) * ga   # [H, F, rows, dv]
        values = block[..., dims.v]
        g_attention = torch.matmul(g_theta, values.transpose(-1, -2))  # [H, F, rows, B]
        if keep is not None:
            g_attention.mul_(keep)
            g_values = torch.matmul((attention * keep).transpose(-1, -2), g_theta)
        else:
            g_values = torch.matmul(attention.transpose(-1, -2), g_theta)
        theta_dot = torch.linalg.vecdot(g_theta, piece.theta)          # [H, F, rows]
        # mu = sigmoid(nu - log Z) and the parent's nu, the mean of t
        nu = block[:, :, i0:i1, -1]
        g_x = (mass_p * piece.mu * piece.one_minus_mu) * (gm - dot)
        neg_eta = piece.log_norm
        empty = c.empty_rows(cfg.causal)
        if empty is not None:
            neg_eta = neg_eta.masked_fill(empty[i0:i1], -math.inf)
        g_term = g_block[:, :, i0:i1, -1]                              # n(C)/n(P) g_nu(P)
        # t = logaddexp(nu, -eta); a structural infinity gets no gradient
        d_nu = torch.sigmoid(nu - neg_eta).nan_to_num_(0.0)
        d_neg_eta = torch.sigmoid(neg_eta - nu).nan_to_num_(0.0)
        g_log_norm = torch.addcmul(-g_x, g_term, d_neg_eta)
        g_nu = torch.addcmul(g_x, g_term, d_nu)
        # softmax with its log-normaliser
        g_logits = attention.mul_(g_attention.sub_(theta_dot.unsqueeze(-1))
                                  .add_(g_log_norm.unsqueeze(-1)))
        g_block[:, :, i0:i1, :dim] += torch.matmul(g_logits, block[..., dims.k])
        g_block[..., dims.k] += torch.matmul(g_logits.transpose(-1, -2),
                                             block[:, :, i0:i1, :dim])
        g_block[..., dims.v] += g_values
        g_block[:, :, i0:i1, -1] = g_nu
        if pos_block is not None:
            _position_grads(grad_pos, pos_block, g_logits, c, f0, f1, i0, i1)
        if bias_ext is not None:
            ids = c.pair_gather(layout.num_pairs)[f0:f1, i0:i1].reshape(-1)
            g = g_logits.sum(0) if bias.dim() == 1 else g_logits.permute(1, 2, 3, 0)
            grad_bias.index_add_(0, ids, g.reshape(ids.numel(), *bias.shape[1:]))
        if i1 == width:
            if c.leaves:
                store_leaves(g_leaves, _whole(piece), g_block)
            else:
                _store_rows(g_nodes, g_block, piece)
    if layout.num_lifted:
        g_leaves[layout.lifted] = g_nodes[:, :layout.num_lifted].transpose(0, 1)
    if layout.root_leaves.numel():
        g_leaves.index_fill_(0, layout.root_leaves, 0.0)
    return _leaf_grads(layout, g_leaves[:layout.num_leaves], leaf_mass, inputs, grad_pos,
                       grad_out) + (None if bias is None else grad_bias[:-1], )


def _whole(piece: Piece) -> Piece:
    r"""The piece of all rows of the piece's families (their gradient block
    is complete once the last row chunk is done)."""
    if piece.i0 == 0 and piece.i1 == piece.size_class.width:
        return piece
    return Piece(piece.number, piece.size_class, piece.f0, piece.f1, 0,
                 piece.size_class.width, piece.log_norm, piece.mu, piece.one_minus_mu,
                 piece.theta)


def _top_down_order(pieces: List[Piece], kept: list):
    r"""The pieces class by class from the top level down; inside a class in
    their own order, so that the row chunks of one family come first to last."""
    groups: List[list] = []
    for piece, extra in zip(pieces, kept):
        if not groups or groups[-1][0][0].number != piece.number:
            groups.append([])
        groups[-1].append((piece, extra))
    for group in reversed(groups):
        yield from group


def _store_rows(g_nodes: Tensor, g_block: Tensor, piece: Piece) -> None:
    c = piece.size_class
    heads, num, width, channels = g_block.shape
    if c.child_start is not None:
        lo = c.child_start + piece.f0 * width
        g_nodes[:, lo:lo + num * width] = g_block.view(heads, -1, channels)
    else:
        rows = c.child[piece.f0:piece.f1].reshape(-1)
        g_nodes.index_copy_(1, rows, g_block.view(heads, -1, channels))


def _position_grads(grad_pos: Tensor, pos_block: Tensor, g_logits: Tensor, c, f0: int,
                    f1: int, i0: int, i1: int) -> None:
    rows = pos_block[..., i0:i1, :]
    if pos_block.dim() == 3:  # shared by the heads: [F, B, c]
        g = g_logits.sum(0)                                           # [F, rows, B]
        g_all = torch.matmul(g.transpose(-1, -2), rows)               # [F, B, c]
        g_all[:, i0:i1] += torch.matmul(g, pos_block)
        grad_pos.index_add_(0, c.child_node[f0:f1].reshape(-1), g_all.reshape(-1, g_all.size(-1)))
    else:                     # per head: [H, F, B, c]
        g_all = torch.matmul(g_logits.transpose(-1, -2), rows)        # [H, F, B, c]
        g_all[:, :, i0:i1] += torch.matmul(g_logits, pos_block)
        g_all = g_all.permute(1, 2, 0, 3)
        grad_pos.index_add_(0, c.child_node[f0:f1].reshape(-1),
                            g_all.reshape(-1, *g_all.shape[2:]))


def _leaf_grads(layout: Layout, leaves: Tensor, leaf_mass: Tensor, inputs: Inputs,
                grad_pos: Optional[Tensor], grad_out: Tensor):
    r"""``q``, ``k``, ``v`` gradients from the leaves' statistics gradient
    ``[L, H, D]``, with the self terms of ``include_self``."""
    cfg, dims, q, k, pos = inputs.cfg, inputs.dims, inputs.q, inputs.k, inputs.pos
    num_leaves, dim = layout.num_leaves, dims.dim
    g_q = leaves[..., :dim] * cfg.scale
    g_k = leaves[..., dims.k].contiguous()
    g_v = leaves[..., dims.v].contiguous()
    if cfg.include_self:
        # nu(i) = s(i, i) = scale q.k + pos.pos; the output gains m(i) v_i
        g_nu = leaves[..., -1:]                                       # [L, H, 1]
        g_q.addcmul_(g_nu, k, value=cfg.scale)
        g_k.addcmul_(g_nu, q, value=cfg.scale)
        g_v.addcmul_(leaf_mass[:num_leaves].unsqueeze(-1), grad_out)
        if pos is not None:
            p = pos[:num_leaves]
            if p.dim() == 2:
                grad_pos[:num_leaves].addcmul_(g_nu.sum(1), p, value=2.0)
            else:
                grad_pos[:num_leaves].addcmul_(g_nu, p, value=2.0)
    return g_q, g_k, g_v, grad_pos
