r"""The forward pass of the dynamic program (names as in ``docs/math.md``).

**Bottom-up**, level by level and class by class: the parents' statistics
are the :math:`n`-weighted means of the children's, and for every child
:math:`C` with siblings :math:`B`

.. math::
    \eta(C) &= -\log \sum_B n(B)\, e^{s(C, B)}, \qquad
    \theta(C) = \sum_B n(B)\, e^{s(C, B) + \eta(C)}\, \rho_v(B), \\
    \mu(C) &= \sigma(\eta(C) - \phi(C)), \qquad
    \phi(P) = -\sum_C \tfrac{n(C)}{n(P)}
        \log\bigl(e^{-\phi(C)} + e^{-\eta(C)}\bigr).

**Top-down**: :math:`\text{acc}(C) = \text{acc}(P) + m(P)\,(1 - \mu(C))\,
\theta(C)` and :math:`m(C) = m(P)\, \mu(C)` (the mass a node passes on; 1 at
the roots), and :math:`\text{out}_i = \text{acc}(i)`, plus :math:`m(i)\, v_i`
with ``include_self``.

The node buffer holds :math:`\nu = -\phi` (so that :math:`\eta - \phi = \nu -
\log Z` and :math:`\nu(P) = \sum_C \frac{n(C)}{n(P)} t(C)` with :math:`t(C) =
\operatorname{logaddexp}(\nu(C), -\eta(C))`: a weighted mean like the
statistics, so one matrix product gives the parent all of them at once).
Infinities are structural and never meet arithmetic that would turn them into
NaN: :math:`\nu = -\infty` of single-leaf subtrees (without ``include_self``)
enters only through :math:`\sigma` and ``logaddexp``; a row without siblings
(the first child under ``causal``) has :math:`\eta = +\infty`, set by a mask
(:math:`\mu = 1`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

from hsa_geo.engine import triton_kernels
from hsa_geo.engine.blocks import (
    Dims,
    Inputs,
    gather,
    guarded_values_product,
    leaf_block,
    pair_bias,
    positions,
    scores,
)
from hsa_geo.engine.layout import Layout, SizeClass
from hsa_geo.engine.recorder import Recorder
from hsa_geo.engine.schedule import Budget, chunks

__all__ = ['Piece', 'node_buffer', 'bottom_up', 'top_down', 'extend_bias', 'softmax_',
           'store_rows', 'take_rows', 'store_leaves', 'take_leaves']


@dataclass
class Piece:
    r"""What the bottom-up pass keeps of one chunk (families ``f0:f1``,
    rows ``i0:i1`` of class number :attr:`number`), head-major: the top-down
    pass and the backward pass read it."""
    number: int
    size_class: SizeClass
    f0: int
    f1: int
    i0: int
    i1: int
    log_norm: Tensor      # [H, F, rows]  logsumexp of the row (= -eta with siblings)
    mu: Tensor            # [H, F, rows]
    one_minus_mu: Tensor  # [H, F, rows]
    theta: Tensor         # [H, F, rows, d_v]
    fused: bool = False   # computed by the Triton kernels (a whole class)

    @property
    def key(self):
        return self.number, self.f0, self.i0

    @property
    def child_rows(self) -> Tensor:
        return self.size_class.child[self.f0:self.f1, self.i0:self.i1].reshape(-1)

    @property
    def parent_rows(self) -> slice:
        start = self.size_class.parent_start
        return slice(start + self.f0, start + self.f1)


def softmax_(logits: Tensor):
    r"""Softmax over the last dimension in place, and its log-normaliser
    ``[..., rows]``.  Every row has a finite entry (the score mask gives rows
    without siblings a dummy one), so no infinity needs handling; this is
    several times faster than :func:`torch.logsumexp`, which does."""
    peak = logits.amax(-1)
    total = logits.sub_(peak.unsqueeze(-1)).exp_().sum(-1)
    attention = logits.div_(total.unsqueeze(-1))
    return attention, total.log_().add_(peak)


def extend_bias(bias: Optional[Tensor]) -> Optional[Tensor]:
    r"""The bias with one zero entry appended (padding and diagonals point
    to it)."""
    if bias is None:
        return None
    return torch.cat([bias, bias.new_zeros(1, *bias.shape[1:])])


def node_buffer(layout: Layout, inputs: Inputs) -> Tensor:
    r"""The node buffer ``[heads, rows, D]``: the lifted leaves' rows filled
    from the inputs, the zero row zeroed; internal rows are written by
    :func:`bottom_up`."""
    dims = inputs.dims
    nodes = inputs.q.new_empty(dims.heads, layout.num_rows, dims.width)
    if layout.num_lifted:
        nodes[:, :layout.num_lifted] = leaf_block(inputs, layout.lifted)
    nodes[:, -1].zero_()
    return nodes


def bottom_up(layout: Layout, nodes: Tensor, inputs: Inputs, bias_ext: Optional[Tensor],
              recorder: Recorder, budget: Budget) -> List[Piece]:
    r"""Fills the internal rows of :obj:`nodes` (statistics and :math:`\nu`)
    and returns the per-chunk :math:`\log Z`, :math:`\mu`, :math:`\theta`."""
    pieces: List[Piece] = []
    cfg, dims, pos = inputs.cfg, inputs.dims, inputs.pos
    dtype = nodes.dtype
    for number, c in enumerate(layout.classes()):
        weight = c.weight_as(dtype)
        width = c.width
        empty = c.empty_rows(cfg.causal)
        if recorder.pair_weights is None and \
                triton_kernels.usable(nodes.device, dtype, width):
            outputs = triton_kernels.forward_class(nodes, c, inputs, bias_ext,
                                                   layout.num_pairs, recorder.seed())
            pieces.append(Piece(number, c, 0, c.num_families, 0, width, *outputs, fused=True))
            continue
        for f0, f1, i0, i1 in chunks(c.num_families, width, dims.heads, dims.width, budget):
            block = gather(nodes, inputs, c, f0, f1)                 # [H, F, B, D]
            whole = i0 == 0 and i1 == width
            w = weight if f1 - f0 == c.num_families else weight[f0:f1]
            logits = scores(block, c, cfg, dims, positions(pos, c, f0, f1),
                            pair_bias(bias_ext, c, layout.num_pairs, f0, f1, i0, i1),
                            f0, f1, i0, i1)
            attention, log_norm = softmax_(logits)                   # [H, F, rows, B]
            dropped = recorder.drop(attention, (number, f0, i0))
            if cfg.guard:
                theta = guarded_values_product(dropped, block[..., dims.v], cfg, i0, i1)
            else:
                theta = torch.matmul(dropped, block[..., dims.v])    # [H, F, rows, dv]
            nu = block[:, :, i0:i1, -1] if not whole else block[..., -1]
            x = torch.sub(nu, log_norm)                              # eta - phi
            mu = torch.sigmoid(x)
            one_minus_mu = torch.sigmoid(x.neg_())
            neg_eta = log_norm
            if empty is not None:  # no sibling: eta = +inf, mu = 1
                rows = empty[i0:i1]
                mu.masked_fill_(rows, 1.0)
                one_minus_mu.masked_fill_(rows, 0.0)
                neg_eta = log_norm.masked_fill(rows, -math.inf)
                if cfg.guard:  # theta of its dummy entry, weighted by 1 - mu = 0
                    theta.masked_fill_(rows.unsqueeze(-1), 0.0)
            # t(C) = logaddexp(nu(C), -eta(C)); nu(P) is their n-weighted mean
            term = torch.logaddexp(nu, neg_eta)
            if cfg.guard and c.padded:  # padding rows weigh 0 in the parent's mean
                term.masked_fill_(~c.valid()[f0:f1, i0:i1], 0.0)
            parents = slice(c.parent_start + f0, c.parent_start + f1)
            if whole:
                # the block is a private copy: put t in its nu channel and one
                # matrix product gives the parents' statistics and nu at once
                block[..., -1] = term
                means = torch.matmul(w.view(1, f1 - f0, 1, width), block)
                nodes[:, parents] = means.view(dims.heads, f1 - f0, dims.width)
            else:
                if i0 == 0:
                    means = torch.matmul(w.view(1, f1 - f0, 1, width), block)
                    nodes[:, parents, :dims.stats] = \
                        means.view(dims.heads, f1 - f0, dims.width)[..., :dims.stats]
                share = (term * w[:, i0:i1]).sum(-1)
                if i0 == 0:
                    nodes[:, parents, -1] = share
                else:
                    nodes[:, parents, -1] += share
            if recorder.pair_weights is not None:
                _record_pairs(recorder.pair_weights, c, attention, one_minus_mu, f0, f1, i0, i1)
            if torch.compiler.is_compiling():
                # dynamo refuses to let an in-place-built intermediate escape
                # the autograd.Function's subgraph through the saved state
                log_norm = log_norm.clone()
            pieces.append(Piece(number, c, f0, f1, i0, i1, log_norm, mu, one_minus_mu, theta))
    return pieces


def _record_pairs(out: Tensor, c: SizeClass, attention: Tensor, one_minus_mu: Tensor,
                  f0: int, f1: int, i0: int, i1: int) -> None:
    r""":math:`\delta(A, B) = (1 - \mu(A))\, e^{s(A, B) + \eta(A)}`, the weight
    of each leaf of :math:`B` for each leaf of :math:`A`, in pair order."""
    ids = c.pair_ids()[f0:f1, i0:i1]
    keep = ids >= 0
    count = c.log_count[f0:f1].to(attention.dtype).exp().unsqueeze(1)   # [F, 1, B]
    delta = attention * one_minus_mu.unsqueeze(-1) / count.clamp(min=1)
    out[ids[keep]] = delta.permute(1, 2, 3, 0)[keep]


def top_down(layout: Layout, pieces: List[Piece], dims: Dims, v: Tensor, guard: bool = False):
    r"""The output ``[L, H, d_v]`` (without the self term) with the leaves'
    passed-on mass ``[L + 1, H]``, and the internal nodes' accumulated output
    ``acc [H, rows, d_v]`` and mass ``[H, rows]``, head-major like the pieces."""
    num_rows, heads, num_leaves = layout.num_rows, dims.heads, layout.num_leaves
    acc = v.new_empty(heads, num_rows, dims.dim_v)
    mass = v.new_empty(heads, num_rows)
    acc.index_fill_(1, layout.root_rows, 0.0)
    mass.index_fill_(1, layout.root_rows, 1.0)
    out = v.new_empty(num_leaves + 1, heads, dims.dim_v)   # row L: padding's
    leaf_mass = v.new_empty(num_leaves + 1, heads)
    for piece in reversed(pieces):  # parents before children
        parents = piece.parent_rows
        mass_p = mass[:, parents].unsqueeze(-1)                          # [H, F, 1]
        share = mass_p * piece.one_minus_mu                              # [H, F, rows]
        child_mass = mass_p * piece.mu
        if guard:
            # a weight of exactly zero (a subtree that keeps nothing, a row
            # without siblings) passes nothing on, not even a NaN
            child_acc = acc[:, parents].unsqueeze(2) + torch.where(
                (share != 0).unsqueeze(-1), share.unsqueeze(-1) * piece.theta, 0.0)
            child_mass = torch.where(mass_p != 0, child_mass, 0.0)
        else:
            child_acc = torch.addcmul(acc[:, parents].unsqueeze(2), share.unsqueeze(-1),
                                      piece.theta)
        if piece.size_class.leaves:
            store_leaves(out, piece, child_acc)
            store_leaves(leaf_mass, piece, child_mass)
        else:
            store_rows(acc, piece, child_acc)
            store_rows(mass, piece, child_mass)
    if layout.num_lifted:
        out[layout.lifted] = acc[:, :layout.num_lifted].transpose(0, 1)
        leaf_mass[layout.lifted] = mass[:, :layout.num_lifted].t()
    if layout.root_leaves.numel():
        out.index_fill_(0, layout.root_leaves, 0.0)
        leaf_mass.index_fill_(0, layout.root_leaves, 1.0)
    return out[:num_leaves], leaf_mass, acc, mass


def store_leaves(buffer: Tensor, piece: Piece, values: Tensor) -> None:
    r"""Writes a piece's per-child values ``[H, F, rows, ...]`` into the rows
    of a node-major leaf buffer ``[L + 1, H, ...]`` (padding goes to row
    ``L``)."""
    c = piece.size_class
    flat = values.movedim(0, 2).flatten(0, 1)                           # [F rows, H, ...]
    if c.child_start is not None and piece.i0 == 0 and piece.i1 == c.width:
        lo = c.child_start + piece.f0 * c.width
        buffer[lo:lo + flat.size(0)] = flat
    else:
        buffer[piece.child_rows] = flat


def take_leaves(buffer: Tensor, piece: Piece) -> Tensor:
    r"""The children's values of a class of leaves from a node-major buffer
    ``[L, H, ...]``, head-major ``[H, F, rows, ...]``, zero at padding."""
    c = piece.size_class
    shape = (buffer.size(1), piece.f1 - piece.f0, piece.i1 - piece.i0) + buffer.shape[2:]
    if c.child_start is not None and piece.i0 == 0 and piece.i1 == c.width:
        lo = c.child_start + piece.f0 * c.width
        rows = buffer[lo:lo + shape[1] * shape[2]]
    else:  # gather along the leading dimension (see blocks.leaf_block)
        rows = buffer.index_select(
            0, c.load_index()[piece.f0:piece.f1, piece.i0:piece.i1].reshape(-1))
    out = rows.transpose(0, 1).contiguous().view(shape)
    if c.padded:
        valid = c.valid()[piece.f0:piece.f1, piece.i0:piece.i1]
        out = out * valid.view((1, ) + valid.shape + (1, ) * (len(shape) - 3))
    return out


def store_rows(buffer: Tensor, piece: Piece, rows: Tensor) -> None:
    r"""Writes a piece's per-child values ``[H, F, rows, ...]`` into the
    children's rows of a head-major buffer ``[H, rows, ...]``."""
    c = piece.size_class
    flat = rows.reshape(rows.size(0), -1, *rows.shape[3:])
    if c.child_start is not None and piece.i0 == 0 and piece.i1 == c.width:
        lo = c.child_start + piece.f0 * c.width
        buffer[:, lo:lo + flat.size(1)] = flat
    else:
        buffer.index_copy_(1, piece.child_rows, flat)


def take_rows(buffer: Tensor, piece: Piece) -> Tensor:
    r"""The children's rows of a piece from a head-major buffer, ``[H, F,
    rows, ...]``."""
    c = piece.size_class
    shape = (buffer.size(0), piece.f1 - piece.f0, piece.i1 - piece.i0) + buffer.shape[2:]
    if c.child_start is not None and piece.i0 == 0 and piece.i1 == c.width:
        lo = c.child_start + piece.f0 * c.width
        return buffer[:, lo:lo + shape[1] * shape[2]].view(shape)
    return buffer.index_select(1, piece.child_rows).view(shape)
