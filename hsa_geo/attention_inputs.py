r"""The inputs of one HSA call, checked: the tensors' types, shapes, dtypes
and devices, the options, the sizes the forest fixes, and the dtype of the
result.  Every hierarchy-like structure (:class:`~hsa_geo.hierarchy_like.HierarchyLike`)
runs these checks before its attention, so that a malformed call raises a
:class:`TypeError` or :class:`ValueError` naming the argument wherever it
lands."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from hsa_geo._checks import as_bool, as_finite_float
from hsa_geo.engine import Config, needs_guard

__all__ = ['AttentionCall', 'prepare', 'check_inputs', 'check_options', 'check_sizes',
           'result_dtype']


class AttentionCall(NamedTuple):
    r"""One checked call: ``q``, ``k``, ``v``, ``pos`` and ``bias`` in the
    engine's dtype (float64 stays float64, the rest is float32), the options,
    and the dtype the result is returned in."""
    q: Tensor
    k: Tensor
    v: Tensor
    pos: Optional[Tensor]
    bias: Optional[Tensor]
    include_self: bool
    causal: bool
    scale: float
    dropout: float
    out_dtype: torch.dtype

    def config(self) -> Config:
        r"""The engine's :class:`~hsa_geo.engine.Config` of this call."""
        return Config(self.include_self, self.causal, self.scale, self.dropout,
                      needs_guard(self.q, self.k, self.v, self.pos, self.bias))


def prepare(q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor], bias: Optional[Tensor],
            include_self, causal, scale, dropout) -> AttentionCall:
    r"""The arguments of :func:`hsa_geo.hsa` checked (except the sizes the
    forest fixes, :func:`check_sizes`) and cast to the engine's dtype."""
    check_inputs(q, k, v, pos, bias)
    include_self, causal, scale = check_options(q, include_self, causal, scale)
    dropout = as_finite_float(dropout, 'dropout')
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must be in [0, 1), got {dropout}")
    out_dtype = result_dtype(v)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    return AttentionCall(q.to(dtype), k.to(dtype), v.to(dtype),
                         None if pos is None else pos.to(dtype),
                         None if bias is None else bias.to(dtype),
                         include_self, causal, scale, dropout, out_dtype)


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


def check_sizes(q: Tensor, pos: Optional[Tensor], bias: Optional[Tensor], forest) -> None:
    r"""The checks that need the forest's sizes (a
    :class:`~hsa_geo.engine.forest.Forest` or a Hierarchy: ``num_leaves``,
    ``num_nodes``, ``num_pairs``, ``device``); run at call time in eager mode
    and inside the compiled operator under ``torch.compile``, so that no size
    is baked into a compiled graph."""
    if q.size(0) != forest.num_leaves:
        raise ValueError(f"'q' has {q.size(0)} rows but the hierarchy has "
                         f"{forest.num_leaves} leaves")
    if forest.device != q.device:
        raise ValueError(f"'hierarchy' is on {forest.device} but 'q' is on "
                         f"{q.device}; move it with hierarchy.to(device)")
    heads = q.size(1)
    if pos is not None and pos.size(0) != forest.num_nodes:
        raise ValueError(f"'pos' must have shape [num_nodes={forest.num_nodes}, "
                         f"c] or [{forest.num_nodes}, heads={heads}, c], "
                         f"got {list(pos.shape)}")
    if bias is not None and bias.size(0) != forest.num_pairs:
        raise ValueError(f"'bias' must have shape [num_pairs={forest.num_pairs}] "
                         f"or [{forest.num_pairs}, heads={heads}] (one "
                         f"entry per column of hierarchy.sibling_index), got "
                         f"{list(bias.shape)}")


def check_inputs(q, k, v, pos, bias) -> None:
    r"""Types, shapes, dtypes and devices of the tensors of one call."""
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
