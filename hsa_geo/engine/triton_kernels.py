r"""Fused Triton kernels for the per-class passes of the dynamic program on
CUDA (the ``gpu`` extra: ``pip install triton``).

One program handles one family and one head: it loads the children's rows
of the node buffer, builds the sibling scores, the softmax with its
log-normaliser, :math:`\theta`, :math:`\mu`, :math:`1 - \mu` and the
parent's statistics and :math:`\nu` in registers, and writes them in the same
layout as the PyTorch path (:class:`~hsa_geo.engine.forward.Piece`), so the
top-down pass and the first backward pass are shared.  The backward kernel
recomputes the scores the same way and writes the children's statistics
gradients.  A level therefore costs two launches forward and one backward per
size class, however many families it has.

Used for float32 classes up to :data:`MAX_WIDTH` children per family (half
precision reaches them as float32, the engine's inside dtype); attention
dropout is drawn in the kernels (Philox, ``tl.rand``, from one seed per
forward call and the pair's number and head), so the backward kernel redraws
the forward's mask and no mask is stored.  Everything else takes the PyTorch
path.  CI tests the
kernels on the CPU in Triton's interpreter (``TRITON_INTERPRET=1`` set before
triton is first imported, and ``HSA_GEO_TRITON_ON_CPU=1`` to send CPU tensors
to the kernels) against the dense reference.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

__all__ = ['available', 'usable', 'forward_class', 'backward_class', 'MAX_WIDTH']

#: Widest family (padded) the kernels handle in registers.
MAX_WIDTH = 64
_KERNELS = {}


def available() -> bool:
    r"""Whether triton can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreted() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def usable(device: torch.device, dtype: torch.dtype, width: int) -> bool:
    r"""Whether a class of this width runs on the kernels for this call
    (``HSA_GEO_TRITON=0`` turns them off, e.g. to time the PyTorch path on a
    GPU)."""
    if os.environ.get('HSA_GEO_TRITON', '1') == '0':
        return False
    if device.type != 'cuda' and not (
            interpreted() and os.environ.get('HSA_GEO_TRITON_ON_CPU', '0') == '1'):
        return False
    return dtype == torch.float32 and width <= MAX_WIDTH and available()


def _block(n: int) -> int:
    return max(16, 1 << max(0, (n - 1).bit_length()))


def _kernels():
    r"""The kernels, loaded on first use for the current ``TRITON_INTERPRET``
    mode (each mode gets its own copy of :mod:`._triton_source`)."""
    key = interpreted()
    if key not in _KERNELS:
        import importlib.util
        path = os.path.join(os.path.dirname(__file__), '_triton_source.py')
        name = f'hsa_geo.engine._triton_source_{"interpreted" if key else "compiled"}'
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _KERNELS[key] = (module.forward_kernel, module.backward_kernel)
    return _KERNELS[key]


def _extras(c, pos: Optional[Tensor], bias_ext: Optional[Tensor], num_pairs: int, dummy: Tensor,
            dropout: float = 0.0):
    if pos is None:
        pos_args = (dummy, 0, 0, c.child_node, 1)
    else:
        pos_args = (pos, pos.stride(0), pos.stride(1) if pos.dim() == 3 else 0, c.child_node,
                    pos.size(-1))
    if bias_ext is None:  # the pair ids still serve dropout's counters
        bias_args = (dummy, 0, 0, c.pair_gather(num_pairs) if dropout > 0 else dummy)
    else:
        bias_args = (bias_ext, bias_ext.stride(0),
                     bias_ext.stride(1) if bias_ext.dim() == 2 else 0, c.pair_gather(num_pairs))
    flags = dict(HAS_POS=pos is not None, POS_HEADS=pos is not None and pos.dim() == 3,
                 HAS_BIAS=bias_ext is not None,
                 BIAS_HEADS=bias_ext is not None and bias_ext.dim() == 2,
                 BP=_block(pos.size(-1)) if pos is not None else 16)
    return pos_args, bias_args, flags


def _sources(inputs, c, dummy: Tensor):
    r"""The input tensors and strides a class of leaves reads (dummies for
    the other classes)."""
    if not c.leaves:
        return (dummy, dummy, dummy, 0, 0, 0, 0, inputs.cfg.scale)
    q, k, v = (t.contiguous() for t in (inputs.q, inputs.k, inputs.v))
    return (q, k, v, q.stride(0), q.stride(1), v.stride(0), v.stride(1), inputs.cfg.scale)


def forward_class(nodes: Tensor, c, inputs, bias_ext: Optional[Tensor], num_pairs: int,
                  seed: int = 0):
    r"""One whole class on the forward kernel: writes the parents' rows of
    :obj:`nodes` and returns ``(log_norm, mu, one_minus_mu, theta)``."""
    forward_kernel, _ = _kernels()
    dims, pos = inputs.dims, inputs.pos
    heads, num, width = dims.heads, c.num_families, c.width
    log_norm = nodes.new_empty(heads, num, width)
    mu, one_minus_mu = torch.empty_like(log_norm), torch.empty_like(log_norm)
    theta = nodes.new_empty(heads, num, width, dims.dim_v)
    dummy = nodes.new_zeros(1)
    dropout = inputs.cfg.dropout
    pos_args, bias_args, flags = _extras(c, pos, bias_ext, num_pairs, dummy, dropout)
    forward_kernel[(num, heads)](
        nodes, nodes.stride(0), nodes.stride(1), *_sources(inputs, c, dummy), c.child,
        c.weight_as(nodes.dtype), c.log_count_as(nodes.dtype), log_norm, mu, one_minus_mu, theta,
        c.parent_start, num, width, dims.dim, dims.dim_v, *pos_args, *bias_args,
        seed, dropout, heads, DROP=dropout > 0, causal=inputs.cfg.causal, LEAVES=c.leaves,
        SELF=inputs.cfg.include_self,
        BB=_block(width), BD=_block(dims.dim), BV=_block(dims.dim_v), IEEE=True,
        GUARD=inputs.cfg.guard, **flags)
    return log_norm, mu, one_minus_mu, theta


def backward_class(nodes: Tensor, g_nodes: Tensor, g_leaves: Tensor, piece, inputs,
                   mass_p: Tensor, ga: Tensor, dot: Tensor, gm: Tensor,
                   grad_pos: Optional[Tensor], bias_ext: Optional[Tensor],
                   grad_bias: Optional[Tensor], num_pairs: int, seed: int = 0) -> None:
    r"""One whole class on the backward kernel: writes the children's rows of
    :obj:`g_nodes` (or, for leaves, of ``g_leaves [L + 1, H, D]``) and adds to
    the position and bias gradients."""
    _, backward_kernel = _kernels()
    c = piece.size_class
    dims, pos = inputs.dims, inputs.pos
    heads, num, width = dims.heads, c.num_families, c.width
    dummy = nodes.new_zeros(1)
    dropout = inputs.cfg.dropout
    pos_args, bias_args, flags = _extras(c, pos, bias_ext, num_pairs, dummy, dropout)
    g_pos_args = (dummy, 0, 0) if grad_pos is None else \
        (grad_pos, grad_pos.stride(0), grad_pos.stride(1) if grad_pos.dim() == 3 else 0)
    g_bias_args = (dummy, 0, 0) if grad_bias is None else \
        (grad_bias, grad_bias.stride(0), grad_bias.stride(1) if grad_bias.dim() == 2 else 0)
    backward_kernel[(num, heads)](
        nodes, g_nodes, nodes.stride(0), nodes.stride(1), *_sources(inputs, c, dummy),
        g_leaves, g_leaves.stride(0), g_leaves.stride(1), c.child, c.weight_as(nodes.dtype),
        c.log_count_as(nodes.dtype), piece.log_norm, piece.mu, piece.one_minus_mu,
        piece.theta, ga.contiguous(), dot.contiguous(), gm.contiguous(),
        mass_p.contiguous(), c.parent_start, num, width, dims.dim, dims.dim_v,
        *pos_args, *g_pos_args, *bias_args, *g_bias_args, seed, dropout, heads,
        DROP=dropout > 0, causal=inputs.cfg.causal,
        LEAVES=c.leaves, SELF=inputs.cfg.include_self, BB=_block(width),
        BD=_block(dims.dim), BV=_block(dims.dim_v), IEEE=True, **flags)
