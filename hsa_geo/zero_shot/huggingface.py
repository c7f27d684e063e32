r"""Zero-shot HSA inside pre-trained Hugging Face encoders (BERT / RoBERTa family).

Amizadeh et al. (NeurIPS 2025, Section 5.3 and Appendix L) replace the softmax
attention of some layers of trained transformers by HSA over fixed windows of
tokens, without any training.  :func:`inject_huggingface` does that through
transformers' own extension point: it registers an attention function
``'hsa_geo'`` in ``AttentionInterface`` (with the matching
``AttentionMaskInterface`` entry, without which transformers 5 does not build
the padding mask for a custom implementation) and switches the model to it.
Layers chosen for HSA run :func:`hsa_geo.hsa` on the model's own query, key and
value projections with the model's own scaling; the other layers run
transformers' SDPA attention unchanged.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import torch
from torch import Tensor

from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.weights import padded_attention_weights
from hsa_geo.zero_shot.tokens import TokenForestCache, check_hierarchy_spec

__all__ = ['inject_huggingface', 'restore_huggingface', 'attention_layers',
           'ATTENTION_NAME']

#: the name under which the attention function is registered in transformers
ATTENTION_NAME = 'hsa_geo'
_SPEC = '_hsa_zero_shot'
_STATE = '_hsa_zero_shot_state'


@dataclass
class _LayerSpec:
    hierarchy: Any
    include_self: bool
    special_ends: bool
    state: '_ModelState'


@dataclass
class _ModelState:
    original_implementation: Optional[str]
    hook: Any = None
    attention_mask: Optional[Tensor] = None
    input_ids: Optional[Tensor] = None
    cache: TokenForestCache = field(default_factory=TokenForestCache)


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    AttentionInterface.register(ATTENTION_NAME, _hsa_attention_forward)
    # the padding mask for layers left on softmax; the HSA layers read the 2D
    # attention_mask captured from the model's inputs instead
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    r"""The Hugging Face ``PreTrainedModel`` in :obj:`model` (itself, or e.g.
    the ``auto_model`` inside a sentence-transformers model)."""
    for module in model.modules():
        config = getattr(module, 'config', None)
        if config is not None and hasattr(config, '_attn_implementation') and hasattr(
                module, 'set_attn_implementation'):
            return module
    raise TypeError(f"'model' must be or contain a Hugging Face PreTrainedModel, got "
                    f"{type(model).__name__}")


def attention_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    r"""The self-attention modules of an encoder, in layer order: the modules
    with ``query``/``key``/``value`` projections and a ``scaling`` (BERT,
    RoBERTa, and the models built from their code)."""
    found = [m for m in _backbone(model).modules()
             if all(hasattr(m, a) for a in ('query', 'key', 'value', 'scaling'))
             and not type(m).__name__.endswith('CrossAttention')]
    if not found:
        raise TypeError(f"found no BERT-style self-attention module in "
                        f"{type(model).__name__}")
    return found


def inject_huggingface(model: torch.nn.Module, layers: Optional[Sequence[int]] = None,
                       hierarchy=(2, 4, 8, 16), include_self: bool = True,
                       special_tokens: str = 'ends') -> torch.nn.Module:
    r"""Replaces softmax attention by HSA in the given layers of a Hugging Face
    encoder, in place; see :func:`hsa_geo.zero_shot.inject`."""
    if special_tokens not in ('ends', 'none'):
        raise ValueError(f"'special_tokens' must be 'ends' or 'none', got "
                         f"{special_tokens!r}")
    hierarchy = check_hierarchy_spec(hierarchy)
    backbone = _backbone(model)
    modules = attention_layers(backbone)
    if layers is None:
        layers = list(range(len(modules)))
    layers = list(layers)
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < len(modules)]
    if bad:
        raise ValueError(f"'layers' must hold layer indices in [0, {len(modules)}), got "
                         f"{bad}")
    _register()
    state = getattr(backbone, _STATE, None)
    if state is None:
        state = _ModelState(original_implementation=backbone.config._attn_implementation)
        state.hook = backbone.register_forward_pre_hook(_capture_inputs(state),
                                                        with_kwargs=True)
        setattr(backbone, _STATE, state)
        _set_implementation(backbone, ATTENTION_NAME)
    for i in layers:
        setattr(modules[i], _SPEC, _LayerSpec(hierarchy, include_self,
                                              special_tokens == 'ends', state))
    return model


def restore_huggingface(model: torch.nn.Module) -> torch.nn.Module:
    r"""Undoes :func:`inject_huggingface`: every layer back on the model's
    original attention implementation."""
    backbone = _backbone(model)
    state = getattr(backbone, _STATE, None)
    if state is None:
        return model
    for module in attention_layers(backbone):
        if hasattr(module, _SPEC):
            delattr(module, _SPEC)
    state.hook.remove()
    delattr(backbone, _STATE)
    _set_implementation(backbone, state.original_implementation)
    return model


def _set_implementation(backbone, name: Optional[str]) -> None:
    # set on every config object: sub-configs may be separate objects
    for module in backbone.modules():
        config = getattr(module, 'config', None)
        if config is not None and hasattr(config, '_attn_implementation'):
            config._attn_implementation = name


def _capture_inputs(state: _ModelState):
    def hook(module, args, kwargs):
        input_ids = kwargs.get('input_ids', args[0] if args else None)
        mask = kwargs.get('attention_mask', args[1] if len(args) > 1 else None)
        state.input_ids = input_ids if isinstance(input_ids, Tensor) else None
        state.attention_mask = mask if isinstance(mask, Tensor) else None
        return None
    return hook


def _hsa_attention_forward(module, query: Tensor, key: Tensor, value: Tensor,
                           attention_mask: Optional[Tensor], dropout: float = 0.0,
                           scaling: Optional[float] = None, **kwargs):
    r"""transformers attention function: ``query``/``key``/``value`` are
    ``[batch, heads, length, head_dim]``; returns ``([batch, length, heads,
    head_dim], weights)`` like transformers' own functions, the weights
    ``[batch, heads, length, length]`` when ``output_attentions`` asks for
    them, else :obj:`None`."""
    spec: Optional[_LayerSpec] = getattr(module, _SPEC, None)
    if spec is None:  # a layer left on softmax attention
        if kwargs.get('output_attentions'):
            # SDPA returns no weights: transformers' own eager attention of
            # the model's code does, so every layer reports its weights
            eager = getattr(sys.modules[type(module).__module__],
                            'eager_attention_forward', None)
            if eager is None:
                raise ValueError(f"output_attentions=True needs the eager attention of "
                                 f"{type(module).__module__}, which has none")
            if attention_mask is not None and attention_mask.dtype == torch.bool:
                # the mask was built for SDPA (True = attend); eager adds it
                attention_mask = torch.zeros_like(attention_mask, dtype=query.dtype) \
                    .masked_fill_(~attention_mask, torch.finfo(query.dtype).min)
            return eager(module, query, key, value, attention_mask, dropout=dropout,
                         scaling=scaling, **kwargs)
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    batch, heads, length, head_dim = query.shape
    if key.shape[2] != length:
        raise ValueError('zero-shot HSA is self-attention: query and key lengths differ '
                         f'({length} and {key.shape[2]}); caches are not supported')
    valid = _valid_tokens(spec.state, attention_mask, batch, length, query.device)
    hierarchy = _hierarchy(spec, valid, query.device)
    q, k, v = (t.transpose(1, 2)[valid] for t in (query, key, value))  # [N, heads, d]
    out = hsa(q, k, v, hierarchy, include_self=spec.include_self, scale=scaling,
              dropout=dropout if module.training else 0.0)
    full = query.new_zeros(batch, length, heads, value.shape[-1])
    full[valid] = out.to(full.dtype)
    weights = None
    if kwargs.get('output_attentions'):
        weights = padded_attention_weights(q, k, hierarchy, valid,
                                           include_self=spec.include_self,
                                           scale=scaling).to(query.dtype)
    return full, weights


def _valid_tokens(state: _ModelState, attention_mask: Optional[Tensor], batch: int,
                  length: int, device) -> Tensor:
    mask = state.attention_mask
    if mask is not None and mask.shape == (batch, length):
        return mask.to(device=device).bool()
    if attention_mask is not None and attention_mask.dim() == 4:
        # the 4D mask transformers built: a key is valid if some query sees it
        seen = attention_mask if attention_mask.dtype == torch.bool else \
            attention_mask > torch.finfo(attention_mask.dtype).min / 2
        return seen[:, 0].any(dim=-2)
    return torch.ones(batch, length, dtype=torch.bool, device=device)


def _hierarchy(spec: _LayerSpec, valid: Tensor, device) -> Hierarchy:
    if isinstance(spec.hierarchy, Hierarchy):
        hierarchy = spec.hierarchy
    elif callable(spec.hierarchy):
        hierarchy = spec.hierarchy(spec.state.input_ids, valid)
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"the 'hierarchy' callable must return a Hierarchy, got "
                            f"{type(hierarchy).__name__}")
    else:
        return spec.state.cache.get(valid, spec.hierarchy, spec.special_ends, device)
    num_valid = int(valid.sum())
    if hierarchy.num_leaves != num_valid:
        raise ValueError(f"the hierarchy has {hierarchy.num_leaves} leaves but the batch "
                         f"has {num_valid} valid tokens (its leaves must be x[mask])")
    return hierarchy.to(device)
