r"""The engine behind :func:`hsa_geo.hsa`: the level-synchronous dynamic
program of ``docs/math.md`` as a small package, on plain tensors and a
layout; it imports nothing above itself (the ``torch.compile`` operator and
the registry that finds a hierarchy behind a tensor live in
:mod:`hsa_geo.compiled` and :mod:`hsa_geo.hierarchy`).

* :mod:`~hsa_geo.engine.layout`: the compiled forest as data (levels, padded
  size classes, the node buffer's rows);
* :mod:`~hsa_geo.engine.builder`: the algorithm that compiles a parent vector
  into a layout (unary chains collapsed, the cost model of the size classes);
* :mod:`~hsa_geo.engine.families`: the same forest as families in CSR form
  (no padding), for the fused CPU kernels;
* :mod:`~hsa_geo.engine.forest`: a validated parent vector with both forms,
  each built on first use (what the engine is handed);
* :mod:`~hsa_geo.engine.numba_kernels`, :mod:`~hsa_geo.engine.triton_kernels`:
  the fused paths on the CPU and on CUDA;
* :mod:`~hsa_geo.engine.schedule`: chunks that fit the memory budget;
* :mod:`~hsa_geo.engine.blocks`: a chunk's gathered statistics and scores;
* :mod:`~hsa_geo.engine.forward`, :mod:`~hsa_geo.engine.backward`: the
  passes;
* :mod:`~hsa_geo.engine.recorder`: dropout masks and pair weights handed out
  by a forward pass.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Union

import torch
from torch import Tensor

from hsa_geo.engine import numba_kernels
from hsa_geo.engine.backward import backward
from hsa_geo.engine.blocks import Config, Dims, Inputs
from hsa_geo.engine.families import Families, families_of
from hsa_geo.engine.forest import Forest
from hsa_geo.engine.forward import bottom_up, extend_bias, node_buffer, top_down
from hsa_geo.engine.layout import Layout
from hsa_geo.engine.recorder import Recorder
from hsa_geo.engine.schedule import Budget

__all__ = ['attention', 'Config', 'Forest', 'Layout', 'Recorder', 'forward_pass',
           'backward_pass', 'no_autocast', 'needs_guard']

#: What the passes accept: a forest (both compiled forms, built on first
#: use) or a bare padded layout.
Structure = Union[Forest, Layout]


def needs_guard(*tensors: Optional[Tensor]) -> bool:
    r"""Whether a call must run with :attr:`Config.guard` (non-finite inputs
    kept to the rows that depend on them): always on a GPU, where deciding
    would cost a host sync; on the CPU only when an input holds a NaN or an
    infinity (one sum per input)."""
    present = [t for t in tensors if t is not None]
    if any(t.device.type != 'cpu' for t in present):
        return True
    # a NaN or an infinity makes the sum non-finite; a sum of finite entries
    # that overflows only takes the guarded path (exact, a little slower).
    # One reduction per tensor, ten times cheaper than isfinite(t).all()
    sums = torch.stack([t.sum() for t in present])
    return not bool(torch.isfinite(sums).all())


def no_autocast(device: torch.device):
    r"""A context in which :func:`torch.autocast` is off on :obj:`device`:
    the engine computes in the dtype it was given (float32 for half-precision
    inputs), whatever the caller's autocast state, in the forward and in the
    backward pass."""
    if device.type in ('cpu', 'cuda', 'xpu', 'mps') and torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _layout(structure: Structure) -> Layout:
    return structure.layout if isinstance(structure, Forest) else structure


def _families(structure: Structure) -> Families:
    return structure.families if isinstance(structure, Forest) else families_of(structure)


def _fused(structure: Structure, q: Tensor, recorder: Recorder) -> Optional[Families]:
    r"""The families when the fused CPU kernels take the call, else
    :obj:`None` (pair weights, CUDA, other dtypes, families wider than
    :data:`~hsa_geo.engine.numba_kernels.MAX_WIDTH`, numba missing or
    switched off)."""
    if recorder.pair_weights is not None or not numba_kernels.usable(q.device, q.dtype):
        return None
    families = _families(structure)
    return families if families.max_width <= numba_kernels.MAX_WIDTH else None


def forward_pass(structure: Structure, cfg: Config, q: Tensor, k: Tensor, v: Tensor,
                 pos: Optional[Tensor], bias: Optional[Tensor], recorder: Recorder):
    r"""The output ``[L, H, d_v]`` and what the backward pass needs: on
    the fused CPU kernels (:mod:`~hsa_geo.engine.numba_kernels`) when they take
    the call, else on the PyTorch path."""
    families = _fused(structure, q, recorder)
    if families is not None:
        return numba_kernels.forward(families, q, k, v, pos, bias, cfg.include_self,
                                     cfg.causal, cfg.scale, cfg.dropout)
    layout = _layout(structure)
    with no_autocast(q.device):
        inputs = Inputs(q, k, v, pos, cfg, Dims(q.size(1), q.size(2), v.size(2)))
        bias_ext = extend_bias(bias)
        nodes = node_buffer(layout, inputs)
        pieces = bottom_up(layout, nodes, inputs, bias_ext, recorder, Budget(q.device))
        out, leaf_mass, _, mass = top_down(layout, pieces, inputs.dims, v, cfg.guard)
        if cfg.include_self:
            out.addcmul_(leaf_mass[:layout.num_leaves].unsqueeze(-1), v)
    return out, (pieces, nodes, mass, leaf_mass, bias_ext)


def backward_pass(structure: Structure, cfg: Config, state, q: Tensor, k: Tensor, v: Tensor,
                  pos: Optional[Tensor], bias: Optional[Tensor], recorder: Recorder,
                  grad_out: Tensor):
    r"""Gradients of ``q``, ``k``, ``v``, ``pos`` and ``bias`` from the state
    :func:`forward_pass` returned, in the forward pass's dtype."""
    if isinstance(state, numba_kernels.State):
        return numba_kernels.backward(_families(structure), state, q, k, v, pos, bias,
                                      cfg.include_self, cfg.causal, cfg.scale, cfg.dropout,
                                      grad_out)
    pieces, nodes, mass, leaf_mass, bias_ext = state
    layout = _layout(structure)
    with no_autocast(q.device):
        inputs = Inputs(q, k, v, pos, cfg, Dims(q.size(1), q.size(2), v.size(2)))
        return backward(layout, pieces, nodes, mass, leaf_mass, inputs, bias, bias_ext,
                        recorder, grad_out.to(q.dtype).contiguous())


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, structure, cfg, recorder, q, k, v, pos, bias):
        out, state = forward_pass(structure, cfg, q, k, v, pos, bias, recorder)
        ctx.structure, ctx.cfg, ctx.recorder, ctx.state = structure, cfg, recorder, state
        ctx.save_for_backward(q, k, v, pos, bias)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, pos, bias = ctx.saved_tensors
        grads = backward_pass(ctx.structure, ctx.cfg, ctx.state, q, k, v, pos, bias,
                              ctx.recorder, grad_out)
        return (None, None, None) + grads


def attention(structure: Structure, cfg: Config, q: Tensor, k: Tensor, v: Tensor,
              pos: Optional[Tensor] = None, bias: Optional[Tensor] = None) -> Tensor:
    r"""HSA over a :class:`Forest` (or a bare :class:`Layout`) for checked
    inputs of one dtype (float32 or float64), differentiable in ``q``, ``k``,
    ``v``, ``pos`` and ``bias``."""
    recorder = Recorder(cfg.dropout)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (q, k, v, pos, bias)):
        return _Attention.apply(structure, cfg, recorder, q, k, v, pos, bias)
    with torch.no_grad():
        out, _ = forward_pass(structure, cfg, q, k, v, pos, bias, recorder)
    return out
