r"""HSA as one opaque operator for ``torch.compile``, above the engine: the
engine gets plain tensors and a layout, this module finds the layout behind
the tensor a compiled graph hands over.

Traced by dynamo, the dynamic program would bake every Python int of a
:class:`~hsa_geo.engine.layout.Layout` (levels, size classes, family widths)
into the graph, and every batch of a new shape would compile again.  Under
compilation :func:`hsa_geo.hsa` therefore calls the custom operator
``hsa_geo::attention``: the graph sees one call whose output shape
``[num_leaves, heads, d_v]`` follows from the input shapes alone, with the
forest given by a tensor (the hierarchy's :attr:`~Hierarchy.token`, int64
of fixed shape ``[2]`` so that no size of the forest enters the graph,
or PyG's batch vector for one flat family per graph), so sizes stay symbolic
and one compiled graph serves every batch.  At run time the operator finds
the compiled layout behind that tensor (:meth:`Hierarchy.of_token`), runs the same
forward and backward passes as eager mode, and keeps the forward pass's
state for the backward pass on a tape, keyed by a small token tensor the
autograd graph holds (freed with it).
"""
from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import versions
from hsa_geo.engine import Config, Recorder, backward_pass, forward_pass, needs_guard
from hsa_geo.hierarchy import Hierarchy

__all__ = ['attention', 'flat_hierarchy', 'resolve', 'check_sizes', 'STATS']

#: How often the operator had to rebuild what it should have found (tests
#: assert these stay zero): a hierarchy behind a parent tensor, a tape entry.
STATS: Dict[str, int] = {'hierarchy_rebuilt': 0, 'tape_recomputed': 0}

_TAPE: Dict[int, tuple] = {}
_KEYS = itertools.count()
_FROM_BATCH: Dict[int, Tuple['weakref.ref[Tensor]', Hierarchy, Optional[tuple]]] = {}
_SINGLE: 'OrderedDict[Tuple[int, str], Hierarchy]' = OrderedDict()

KINDS = ('token', 'parent', 'batch', 'single')


def flat_hierarchy(batch: Optional[Tensor], num_nodes: int, device) -> Hierarchy:
    r"""One flat family per graph of :obj:`batch` (one for all nodes when it is
    :obj:`None`), built once per batch tensor and reused by every layer that
    is handed the same tensor, as long as the tensor is not written in place
    (its version counter is part of the key)."""
    if batch is None:
        key = (num_nodes, str(device))
        if key not in _SINGLE:
            _SINGLE[key] = Hierarchy.from_batch(None, num_nodes).to(device)
            while len(_SINGLE) > 8:
                _SINGLE.popitem(last=False)
        return _SINGLE[key]
    version = versions(batch)  # None for an inference tensor: not cached
    entry = _FROM_BATCH.get(id(batch))
    if entry is not None and entry[0]() is batch and entry[1].num_leaves == num_nodes \
            and version is not None and entry[2] == version:
        return entry[1]
    # built anew for a new tensor, and for the same tensor written in place
    # since (a reused batch buffer): its version counter moved on
    hierarchy = Hierarchy.from_batch(batch, num_nodes)
    key = id(batch)
    if entry is None or entry[0]() is not batch:
        weakref.finalize(batch, _FROM_BATCH.pop, key, None)
    _FROM_BATCH[key] = (weakref.ref(batch), hierarchy, version)
    return hierarchy


def resolve(structure: Tensor, kind: str, num_leaves: int) -> Hierarchy:
    r"""The compiled hierarchy behind the tensor the operator was given."""
    if kind == 'batch':
        return flat_hierarchy(structure, num_leaves, structure.device)
    if kind == 'single':
        return flat_hierarchy(None, num_leaves, structure.device)
    if kind == 'token':
        found = Hierarchy.of_token(structure)
        if found is None:
            raise RuntimeError("hsa_geo: the compiled HSA operator was handed the token of "
                               "a hierarchy that no longer exists in this process; keep the "
                               "Hierarchy alive while its attention (and its backward pass) "
                               "runs (a token does not survive saving a compiled or "
                               "exported program)")
        return found
    found = Hierarchy.of(structure)
    if found is not None:
        return found
    # A copy of the parent vector (e.g. made by a compiler pass): rebuilding
    # is exact, only slower.
    STATS['hierarchy_rebuilt'] += 1
    if STATS['hierarchy_rebuilt'] == 1:
        warnings.warn("hsa_geo: the compiled HSA operator was handed a copy of a "
                      "hierarchy's parent vector and compiles the hierarchy again "
                      "(correct, but slow); pass the Hierarchy itself", stacklevel=2)
    return Hierarchy.from_parent(structure, num_leaves)


def check_sizes(q: Tensor, pos: Optional[Tensor], bias: Optional[Tensor],
                hierarchy: Hierarchy) -> None:
    r"""The checks of :func:`hsa_geo.hsa` that need the hierarchy's sizes (run
    at call time in eager mode, inside the operator when compiled, so that no
    size is baked into a compiled graph)."""
    if q.size(0) != hierarchy.num_leaves:
        raise ValueError(f"'q' has {q.size(0)} rows but the hierarchy has "
                         f"{hierarchy.num_leaves} leaves")
    if hierarchy.device != q.device:
        raise ValueError(f"'hierarchy' is on {hierarchy.device} but 'q' is on "
                         f"{q.device}; move it with hierarchy.to(device)")
    heads = q.size(1)
    if pos is not None and pos.size(0) != hierarchy.num_nodes:
        raise ValueError(f"'pos' must have shape [num_nodes={hierarchy.num_nodes}, "
                         f"c] or [{hierarchy.num_nodes}, heads={heads}, c], "
                         f"got {list(pos.shape)}")
    if bias is not None and bias.size(0) != hierarchy.num_pairs:
        raise ValueError(f"'bias' must have shape [num_pairs={hierarchy.num_pairs}] "
                         f"or [{hierarchy.num_pairs}, heads={heads}] (one "
                         f"entry per column of hierarchy.sibling_index), got "
                         f"{list(bias.shape)}")


def _empty_like_none(t: Optional[Tensor], like: Tensor) -> Tensor:
    return like.new_empty(0) if t is None else t


@torch.library.custom_op('hsa_geo::attention', mutates_args=())
def attention(q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor],
              bias: Optional[Tensor], structure: Tensor, kind: str, include_self: bool,
              causal: bool, scale: float, dropout: float) -> Tuple[Tensor, Tensor]:
    r"""HSA's output ``[L, H, d_v]`` and the token of its tape entry."""
    if not (math.isfinite(scale) and 0.0 <= dropout < 1.0):
        raise ValueError(f"'scale' must be finite and 'dropout' in [0, 1), got scale="
                         f"{scale} and dropout={dropout}")
    hierarchy = resolve(structure, kind, q.size(0))
    check_sizes(q, pos, bias, hierarchy)
    cfg = Config(include_self, causal, scale, dropout, needs_guard(q, k, v, pos, bias))
    recorder = Recorder(dropout)
    out, state = forward_pass(hierarchy.forest, cfg, q, k, v, pos, bias, recorder)
    key = next(_KEYS)
    token = torch.tensor([key], dtype=torch.long)
    _TAPE[key] = (hierarchy, cfg, recorder, state)
    weakref.finalize(token, _TAPE.pop, key, None)
    return out, token


@attention.register_fake
def _(q, k, v, pos, bias, structure, kind, include_self, causal, scale, dropout):
    return (q.new_empty(q.size(0), q.size(1), v.size(2)),
            torch.empty(1, dtype=torch.long))


@torch.library.custom_op('hsa_geo::attention_backward', mutates_args=())
def attention_backward(grad: Tensor, token: Tensor, q: Tensor, k: Tensor, v: Tensor,
                       pos: Optional[Tensor], bias: Optional[Tensor], structure: Tensor,
                       kind: str, include_self: bool, causal: bool, scale: float,
                       dropout: float) -> List[Tensor]:
    r"""Gradients of ``q``, ``k``, ``v``, ``pos`` and ``bias`` (empty tensors
    for absent ones)."""
    entry = _TAPE.get(int(token[0]))
    if entry is None:
        if dropout > 0:
            raise RuntimeError("hsa_geo: the forward state of a compiled HSA call with "
                               "attention dropout was lost before its backward pass; "
                               "its dropout masks cannot be redrawn")
        STATS['tape_recomputed'] += 1
        hierarchy, recorder = resolve(structure, kind, q.size(0)), Recorder(0.0)
        cfg = Config(include_self, causal, scale, dropout, needs_guard(q, k, v, pos, bias))
        _, state = forward_pass(hierarchy.forest, cfg, q, k, v, pos, bias, recorder)
    else:
        hierarchy, cfg, recorder, state = entry  # the forward pass's own config
    g_q, g_k, g_v, g_pos, g_bias = backward_pass(hierarchy.forest, cfg, state, q, k, v, pos,
                                                 bias, recorder, grad)
    return [g_q, g_k, g_v, _empty_like_none(g_pos, q), _empty_like_none(g_bias, q)]


@attention_backward.register_fake
def _(grad, token, q, k, v, pos, bias, structure, kind, include_self, causal, scale,
      dropout):
    return [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            q.new_empty(0) if pos is None else torch.empty_like(pos),
            q.new_empty(0) if bias is None else torch.empty_like(bias)]


def _setup_context(ctx, inputs, output):
    q, k, v, pos, bias, structure, *options = inputs
    ctx.save_for_backward(q, k, v, pos, bias, structure, output[1])
    ctx.options = tuple(options)
    ctx.present = (pos is not None, bias is not None)


def _backward(ctx, grad_out, _grad_token):
    q, k, v, pos, bias, structure, token = ctx.saved_tensors
    g_q, g_k, g_v, g_pos, g_bias = attention_backward(grad_out, token, q, k, v, pos, bias,
                                                      structure, *ctx.options)
    return (g_q, g_k, g_v, g_pos if ctx.present[0] else None,
            g_bias if ctx.present[1] else None) + (None, ) * (len(ctx.options) + 1)


attention.register_autograd(_backward, setup_context=_setup_context)
