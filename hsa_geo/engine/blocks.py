r"""One chunk of one size class as dense blocks: the children's statistics
gathered from the node buffer, and their sibling scores

.. math::
    s(A, B) = \tilde\rho_q(A) \cdot \rho_k(B) + \epsilon(A) \cdot \epsilon(B)
        + b(A, B) + \log n(B)

(:math:`\tilde\rho_q` is the scaled query mean; :math:`\log n(B)` weighs a
sibling by its leaves, so a softmax over the row gives
:math:`n(B)\, e^{s(A, B) + \eta(A)}`; non-siblings are :math:`-\infty`).  The
forward pass and the backward pass (which recomputes the scores instead of
storing them) share these functions.

The node buffer is head-major, ``[heads, rows, D]`` with ``D = 2 d + d_v + 1``
channels per row: :math:`\tilde\rho_q`, :math:`\rho_k`, :math:`\rho_v` and
:math:`\phi`.  Gathering rows along dimension 1 gives a block ``[heads, F, B,
D]`` whose batch dimensions merge, so every matrix product below is one
batched GEMM without a layout copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from hsa_geo.engine.layout import SizeClass

__all__ = ['Config', 'Dims', 'Inputs', 'gather', 'leaf_block', 'scores', 'positions',
           'pair_bias', 'guarded_values_product']


@dataclass(frozen=True)
class Config:
    r"""One call's options, fixed for its forward and backward pass.

    ``guard``: keep a non-finite input (NaN, infinity) in exactly the rows
    that depend on it.  Without it a NaN also reaches rows that give it zero
    weight (a masked score, a padding slot, the diagonal of a family:
    :math:`0 \cdot \mathrm{NaN}`); with it masked scores are set, not added,
    padding is zeroed and every block's value product counts the non-finite
    values each row attends (structurally) apart.  On for GPU inputs (no
    host sync to decide) and for CPU inputs holding a non-finite entry."""
    include_self: bool
    causal: bool
    scale: float
    dropout: float
    guard: bool = False


@dataclass(frozen=True)
class Dims:
    r"""Channel offsets of the node buffer."""
    heads: int
    dim: int
    dim_v: int

    @property
    def k(self) -> slice:
        return slice(self.dim, 2 * self.dim)

    @property
    def v(self) -> slice:
        return slice(2 * self.dim, 2 * self.dim + self.dim_v)

    @property
    def stats(self) -> int:
        r"""Channels that are means over the leaves (all but :math:`\phi`)."""
        return 2 * self.dim + self.dim_v

    @property
    def width(self) -> int:
        return 2 * self.dim + self.dim_v + 1


@dataclass(frozen=True)
class Inputs:
    r"""One call's inputs, ``[L, H, .]`` as the user gave them."""
    q: Tensor
    k: Tensor
    v: Tensor
    pos: Optional[Tensor]
    cfg: Config
    dims: Dims


def leaf_block(inputs: Inputs, ids: Optional[Tensor], lo: int = 0, hi: int = 0) -> Tensor:
    r"""``[heads, n, D]`` the leaves ``ids`` (or ``lo:hi``) as node-buffer
    rows: :math:`(s q, k, v, \nu)` with :math:`\nu = s(i, i)` under
    ``include_self`` and :math:`-\infty` without, read straight from the
    inputs (the leaves are never copied into a buffer of their own)."""
    def take(t: Tensor) -> Tensor:                                     # [H, n, c] view
        # gather along the leading dimension of the user's tensor: an
        # index_select along dim 1 of its transpose would copy all of it first
        return (t[lo:hi] if ids is None else t.index_select(0, ids)).transpose(0, 1)

    cfg = inputs.cfg
    q, k, v = take(inputs.q), take(inputs.k), take(inputs.v)
    if cfg.include_self:
        nu = torch.linalg.vecdot(q, k).mul_(cfg.scale)                 # [H, n]
        if inputs.pos is not None:
            p = inputs.pos[lo:hi] if ids is None else inputs.pos.index_select(0, ids)
            pp = torch.linalg.vecdot(p, p)                             # [n] or [n, H]
            nu += pp if pp.dim() == 1 else pp.t()
    else:
        nu = q.new_full(q.shape[:2], -math.inf)
    block = torch.cat([q, k, v, nu.unsqueeze(-1)], -1)
    block[..., :inputs.dims.dim] *= cfg.scale
    return block


def gather(nodes: Tensor, inputs: Inputs, c: SizeClass, f0: int, f1: int) -> Tensor:
    r"""``[heads, f1 - f0, B, D]`` a private, contiguous copy of the rows of
    the children of families ``f0:f1``: contiguous so that the heads and the
    families merge into one GEMM batch dimension (a strided view would make
    every product copy its operands), private so that the forward pass may
    overwrite its :math:`\nu` channel.  A class of leaves reads the inputs."""
    heads, _, width = nodes.shape
    if c.leaves:
        if c.child_start is not None:
            lo = c.child_start + f0 * c.width
            block = leaf_block(inputs, None, lo, c.child_start + f1 * c.width)
        else:
            block = leaf_block(inputs, c.load_index()[f0:f1].reshape(-1))
            if inputs.cfg.guard and c.padded:  # padding read leaf 0: zero it
                block.masked_fill_(~c.valid()[f0:f1].reshape(1, -1, 1), 0.0)
    elif c.child_start is not None:  # stored in block order: one strided copy
        lo = c.child_start + f0 * c.width
        # clone, not contiguous(): with one head the slice is already
        # contiguous and contiguous() would hand out the buffer itself
        block = nodes[:, lo:c.child_start + f1 * c.width].clone(
            memory_format=torch.contiguous_format)
    else:
        block = nodes.index_select(1, c.child[f0:f1].reshape(-1))
    return block.view(heads, f1 - f0, c.width, width)


def positions(pos: Optional[Tensor], c: SizeClass, f0: int, f1: int) -> Optional[Tensor]:
    r"""The children's position vectors: ``[F, B, c]`` when shared by the
    heads, ``[heads, F, B, c]`` per head."""
    if pos is None:
        return None
    nodes = c.child_node[f0:f1].reshape(-1)
    if pos.dim() == 2:
        return pos.index_select(0, nodes).view(f1 - f0, c.width, -1)
    return pos.index_select(0, nodes).view(f1 - f0, c.width, pos.size(1), -1) \
        .permute(2, 0, 1, 3)


def pair_bias(bias_ext: Optional[Tensor], c: SizeClass, num_pairs: int, f0: int, f1: int,
              i0: int, i1: int) -> Optional[Tensor]:
    r"""The pair bias of the chunk, ``[F, rows, B]`` or ``[heads, F, rows,
    B]``; :obj:`bias_ext` is the bias with one zero entry appended, which the
    diagonal and the padding point to."""
    if bias_ext is None:
        return None
    ids = c.pair_gather(num_pairs)[f0:f1, i0:i1]
    out = bias_ext[ids]
    return out if out.dim() == 3 else out.permute(3, 0, 1, 2)


def scores(block: Tensor, c: SizeClass, cfg: Config, dims: Dims, pos_block: Optional[Tensor],
           bias_block: Optional[Tensor], f0: int, f1: int, i0: int, i1: int) -> Tensor:
    r"""``[heads, F, rows, B]`` sibling scores of rows ``i0:i1``, with the
    mask and the :math:`\log n(B)` weights added."""
    query = block[:, :, i0:i1, :dims.dim]
    key = block[:, :, :, dims.k]
    out = torch.matmul(query, key.transpose(-1, -2))
    for term in c.score_mask(cfg.causal, block.dtype, f0, f1, i0, i1):
        out += term
    if pos_block is not None:
        rows = pos_block[..., i0:i1, :]
        out += torch.matmul(rows, pos_block.transpose(-1, -2))
    if bias_block is not None:
        out += bias_block
    if cfg.guard:
        # set, not added: -inf + NaN would be NaN; a row without siblings
        # (its dummy entry) gets a constant whatever its own inputs
        out.masked_fill_(c.blocked(cfg.causal, f0, f1, i0, i1), -math.inf)
        if cfg.causal and i0 == 0:
            out[:, :, 0, 0] = 0.0
    return out


def guarded_values_product(attention: Tensor, values: Tensor, cfg: Config, i0: int,
                           i1: int) -> Tensor:
    r"""``attention @ values`` (``[H, F, rows, B] @ [H, F, B, dv]``) where an
    entry of the result is NaN exactly when its row attends (structurally: a
    sibling, left of it when causal) a non-finite value in that channel, and
    finite otherwise: a weight of exactly zero on a non-finite value (the
    diagonal, a masked sibling, padding) contributes nothing."""
    bad = ~torch.isfinite(values)                                    # [H, F, B, dv]
    out = torch.matmul(attention, values.masked_fill(bad, 0.0))
    count = bad.to(attention.dtype)
    if cfg.causal:   # the siblings left of each row
        reached = count.cumsum(2) - count
    else:            # every sibling but the row itself (padding is finite)
        reached = count.sum(2, keepdim=True) - count
    return out.masked_fill_(reached[:, :, i0:i1] > 0, math.nan)
