r"""HSA as one opaque operator for ``torch.compile``, above the engine: the
engine gets plain tensors and a forest, this module finds the forest behind
the tensor a compiled graph hands over (the registry of compiled forests by
token and by parent tensor lives here, with the flat forests of PyG batch
vectors).

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
the compiled forest behind that tensor (:func:`owner_of_token`), runs the same
forward and backward passes as eager mode, and keeps the forward pass's
state for the backward pass on a tape, keyed by a small token tensor the
autograd graph holds (freed with it).
"""
from __future__ import annotations

import itertools
import math
import secrets
import warnings
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from hsa_geo import engine
from hsa_geo._checks import versions
from hsa_geo.attention_inputs import AttentionCall, check_sizes
from hsa_geo.engine import Config, Recorder, backward_pass, forward_pass, needs_guard
from hsa_geo.engine.forest import Forest
from hsa_geo.parent_vector import check_parent, compile_forest, flat_parent

__all__ = ['attention', 'run', 'register', 'owner_of_token', 'owner_of_parent', 'flat_forest',
           'resolve', 'STATS']

#: How often the operator had to rebuild what it should have found (tests
#: assert these stay zero): a forest behind a parent tensor, a tape entry.
STATS: Dict[str, int] = {'hierarchy_rebuilt': 0, 'tape_recomputed': 0}

_TAPE: Dict[int, tuple] = {}
_KEYS = itertools.count()
_FROM_BATCH: Dict[int, Tuple['weakref.ref[Tensor]', Forest, Optional[tuple]]] = {}
_SINGLE: 'OrderedDict[Tuple[int, str], Forest]' = OrderedDict()

KINDS = ('token', 'parent', 'batch', 'single')


# ------------------------------------------------------------------ registry
# The owners of compiled forests (Hierarchy objects: anything with a
# ``forest`` and a ``check_intact()``) by their token and by the identity of
# their parent tensor: under torch.compile the operator is handed tensors
# only, and these find the forest behind the tensor it was given.
_BY_PARENT: Dict[int, 'weakref.ref'] = {}
_BY_TOKEN: Dict[int, 'weakref.ref'] = {}
_SERIALS = itertools.count(1)
# a token names a forest of this process only: one saved and loaded in
# another process (an exported program, say) must not name another forest
_PROCESS = secrets.randbits(62)


def _forget(registry: dict, key: int, ref) -> None:
    if registry.get(key) is ref:
        del registry[key]


def register(owner, parent: Tensor) -> Tensor:
    r"""Registers :obj:`owner` (it holds ``forest`` and ``check_intact()``)
    under its parent tensor and a new token, and returns the token: CPU int64
    of fixed shape ``[2]`` (this process, a serial), the owner's stand-in in a
    compiled graph, so that no size of the forest becomes a size of the graph
    (sizes 0 and 1, or a node count equal to another size, would make
    torch.compile specialise and recompile).  Both entries go with the owner."""
    ref = weakref.ref(owner)
    key, serial = id(parent), next(_SERIALS)
    _BY_PARENT[key] = ref
    _BY_TOKEN[serial] = ref
    weakref.finalize(owner, _forget, _BY_PARENT, key, ref)
    weakref.finalize(owner, _forget, _BY_TOKEN, serial, ref)
    return torch.from_numpy(np.array([_PROCESS, serial], dtype=np.int64))


def owner_of_token(token: Tensor):
    r"""The live owner registered under this token, or :obj:`None` (also for
    a token of another process)."""
    process, serial = (int(x) for x in token.reshape(-1)[:2])
    if process != _PROCESS:
        return None
    ref = _BY_TOKEN.get(serial)
    found = ref() if ref is not None else None
    if found is not None:
        found.check_intact()
    return found


def owner_of_parent(parent: Tensor):
    r"""The live owner whose parent is this very tensor object, or
    :obj:`None`."""
    ref = _BY_PARENT.get(id(parent))
    found = ref() if ref is not None else None
    if found is None or found.parent is not parent:
        return None
    found.check_intact()
    return found


# -------------------------------------------------------------- flat forests
def _flat(batch: Optional[Tensor], num_nodes: int) -> Forest:
    parent = flat_parent(batch, num_nodes)
    parent, num_nodes = check_parent(parent, num_nodes)
    return compile_forest(parent, num_nodes).forest


def flat_forest(batch: Optional[Tensor], num_nodes: int, device) -> Forest:
    r"""One flat family per graph of :obj:`batch` (one for all nodes when it is
    :obj:`None`): softmax attention within each graph.  Built once per batch
    tensor and reused by every layer that is handed the same tensor, as long
    as the tensor is not written in place (its version counter is part of
    the key)."""
    if batch is None:
        key = (num_nodes, str(device))
        if key not in _SINGLE:
            _SINGLE[key] = _flat(None, num_nodes).to(device)
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
    forest = _flat(batch, num_nodes).to(batch.device)
    key = id(batch)
    if entry is None or entry[0]() is not batch:
        weakref.finalize(batch, _FROM_BATCH.pop, key, None)
    _FROM_BATCH[key] = (weakref.ref(batch), forest, version)
    return forest


def resolve(structure: Tensor, kind: str, num_leaves: int) -> Forest:
    r"""The compiled forest behind the tensor the operator was given."""
    if kind == 'batch':
        return flat_forest(structure, num_leaves, structure.device)
    if kind == 'single':
        return flat_forest(None, num_leaves, structure.device)
    if kind == 'token':
        found = owner_of_token(structure)
        if found is None:
            raise RuntimeError("hsa_geo: the compiled HSA operator was handed the token of "
                               "a hierarchy that no longer exists in this process; keep the "
                               "Hierarchy alive while its attention (and its backward pass) "
                               "runs (a token does not survive saving a compiled or "
                               "exported program)")
        return found.forest
    found = owner_of_parent(structure)
    if found is not None:
        return found.forest
    # A copy of the parent vector (e.g. made by a compiler pass): rebuilding
    # is exact, only slower.
    STATS['hierarchy_rebuilt'] += 1
    if STATS['hierarchy_rebuilt'] == 1:
        warnings.warn("hsa_geo: the compiled HSA operator was handed a copy of a "
                      "hierarchy's parent vector and compiles the hierarchy again "
                      "(correct, but slow); pass the Hierarchy itself", stacklevel=2)
    parent, num_leaves = check_parent(structure, num_leaves)
    return compile_forest(parent, num_leaves).forest.to(structure.device)


# ---------------------------------------------------------------- one call
def run(call: AttentionCall, structure: Tensor, kind: str,
        forest: Optional[Forest] = None) -> Tensor:
    r"""HSA of a checked call over the forest named by :obj:`structure` and
    :obj:`kind` (see :data:`KINDS`), in the call's output dtype: under
    ``torch.compile`` as one opaque operator, so that no size of this batch's
    forest enters the graph; eagerly straight on the engine (on
    :obj:`forest` when given, else on the forest :func:`resolve` finds)."""
    if torch.compiler.is_compiling():
        out, _ = attention(call.q, call.k, call.v, call.pos, call.bias, structure, kind,
                           call.include_self, call.causal, call.scale, call.dropout)
        return out.to(call.out_dtype)
    if forest is None:
        forest = resolve(structure, kind, call.q.size(0))
    check_sizes(call.q, call.pos, call.bias, forest)
    out = engine.attention(forest, call.config(), call.q, call.k, call.v, call.pos, call.bias)
    return out.to(call.out_dtype)


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
    forest = resolve(structure, kind, q.size(0))
    check_sizes(q, pos, bias, forest)
    cfg = Config(include_self, causal, scale, dropout, needs_guard(q, k, v, pos, bias))
    recorder = Recorder(dropout)
    out, state = forward_pass(forest, cfg, q, k, v, pos, bias, recorder)
    key = next(_KEYS)
    token = torch.tensor([key], dtype=torch.long)
    _TAPE[key] = (forest, cfg, recorder, state)
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
        forest, recorder = resolve(structure, kind, q.size(0)), Recorder(0.0)
        cfg = Config(include_self, causal, scale, dropout, needs_guard(q, k, v, pos, bias))
        _, state = forward_pass(forest, cfg, q, k, v, pos, bias, recorder)
    else:
        forest, cfg, recorder, state = entry  # the forward pass's own config
    g_q, g_k, g_v, g_pos, g_bias = backward_pass(forest, cfg, state, q, k, v, pos,
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
