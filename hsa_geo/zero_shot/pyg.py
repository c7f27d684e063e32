r"""Zero-shot HSA in place of ``torch.nn.MultiheadAttention`` (e.g. inside PyG's
:class:`~torch_geometric.nn.conv.GPSConv`)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, MultiheadAttention

from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.weights import padded_attention_weights
from hsa_geo.zero_shot.tokens import TokenForestCache, check_hierarchy_spec

__all__ = ['HSAMultiheadAttention', 'inject_pyg', 'restore_pyg', 'set_hierarchy']


class HSAMultiheadAttention(MultiheadAttention):
    r"""A :class:`torch.nn.MultiheadAttention` whose softmax attention is
    replaced by Hierarchical Self-Attention (Amizadeh et al., NeurIPS 2025):
    same projections, same parameters and ``state_dict``, same call
    ``attn(x, x, x, key_padding_mask=...)`` on padded batches ``[batch,
    length, channels]`` (as :class:`~torch_geometric.nn.conv.GPSConv` makes
    them with :func:`~torch_geometric.utils.to_dense_batch`), and still an
    instance of ``MultiheadAttention``, so code that checks for one (GPSConv
    does) keeps working.  :meth:`convert` turns a trained module into one in
    place; :meth:`revert` turns it back.

    The valid (unpadded) positions of the batch, taken in row-major order, are
    the leaves of the hierarchy: for ``GPSConv`` these are the batch's nodes in
    their own order, so a :class:`~hsa_geo.Hierarchy` over the nodes of a PyG
    batch (e.g. ``Hierarchy.from_hetero(batch)``) is the right one.

    Args:
        embed_dim (int): Model width (as for ``MultiheadAttention``).
        num_heads (int): Number of heads.
        hierarchy (tuple or str or Callable or Hierarchy, optional):
            ``'flat'`` (each row one family: with :obj:`include_self` exactly
            softmax attention), bottom-up window sizes such as ``(2, 4, 8,
            16)`` over each row, a callable mapping the validity mask
            ``[batch, length]`` to a :class:`~hsa_geo.Hierarchy`, or a fixed
            :class:`~hsa_geo.Hierarchy` (replace it per batch with
            :func:`set_hierarchy`). (default: ``'flat'``)
        include_self (bool, optional): Let a token attend to itself, as
            softmax attention does. (default: :obj:`True`)
        **kwargs: Other arguments of ``MultiheadAttention``.
    """
    def __init__(self, embed_dim: int, num_heads: int, hierarchy='flat',
                 include_self: bool = True, **kwargs):
        super().__init__(embed_dim, num_heads, **kwargs)
        self._setup(hierarchy, include_self, MultiheadAttention)

    @classmethod
    def convert(cls, attention: MultiheadAttention, hierarchy='flat',
                include_self: bool = True) -> 'HSAMultiheadAttention':
        r"""Turns the trained :obj:`attention` into an
        :class:`HSAMultiheadAttention`, in place (its parameters untouched)."""
        if isinstance(attention, HSAMultiheadAttention):
            attention._setup(hierarchy, include_self, attention._original_class)
            return attention
        if not isinstance(attention, MultiheadAttention):
            raise TypeError(f"'attention' must be a torch.nn.MultiheadAttention, got "
                            f"{type(attention).__name__}")
        if attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError("'attention' uses add_bias_kv or add_zero_attn, which add "
                             "keys that belong to no hierarchy")
        original = type(attention)
        attention.__class__ = cls
        attention._setup(hierarchy, include_self, original)
        return attention

    def revert(self) -> MultiheadAttention:
        r"""Turns this module back into the attention it was converted from."""
        self.__class__ = self._original_class
        for name in ('hierarchy', 'include_self', '_cache', '_original_class'):
            self.__dict__.pop(name, None)
        return self

    def _setup(self, hierarchy, include_self: bool, original_class) -> None:
        self.hierarchy = check_hierarchy_spec(hierarchy)
        self.include_self = include_self
        self._cache = TokenForestCache()
        self._original_class = original_class

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        r"""Like :meth:`torch.nn.MultiheadAttention.forward` (self-attention
        on batched input): returns the output and, with :obj:`need_weights`,
        the HSA attention weights ``[batch, length, length]`` averaged over
        the heads (``[batch, heads, length, length]`` with
        ``average_attn_weights=False``), zero for padded positions."""
        if key is not query or value is not query:
            raise ValueError('HSAMultiheadAttention is self-attention: pass the same '
                             'tensor as query, key and value')
        if attn_mask is not None or is_causal:
            raise ValueError("'attn_mask' and 'is_causal' are not supported: the "
                             "hierarchy decides who attends to whom")
        if query.dim() != 3:
            raise ValueError(f"'query' must be batched, [batch, length, channels] (or "
                             f"[length, batch, channels] without batch_first), got shape "
                             f"{list(query.shape)}")
        x = query if self.batch_first else query.transpose(0, 1)  # [batch, length, C]
        batch, length, channels = x.shape
        if key_padding_mask is None:
            valid = torch.ones(batch, length, dtype=torch.bool, device=x.device)
        elif key_padding_mask.dtype == torch.bool:
            valid = ~key_padding_mask
        else:  # float masks add -inf where padded
            valid = key_padding_mask == 0
        hierarchy = self._hierarchy(valid)
        tokens = x[valid]
        if self._qkv_same_embed_dim:
            q, k, v = F.linear(tokens, self.in_proj_weight, self.in_proj_bias).chunk(3, -1)
        else:
            biases = (self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else
                      (None, None, None))
            q = F.linear(tokens, self.q_proj_weight, biases[0])
            k = F.linear(tokens, self.k_proj_weight, biases[1])
            v = F.linear(tokens, self.v_proj_weight, biases[2])
        heads = self.num_heads
        shape = (tokens.size(0), heads, -1)
        out = hsa(q.reshape(shape), k.reshape(shape), v.reshape(shape), hierarchy,
                  include_self=self.include_self,
                  dropout=self.dropout if self.training else 0.0)
        out = self.out_proj(out.reshape(tokens.size(0), -1))
        full = x.new_zeros(batch, length, out.size(-1))
        full[valid] = out
        if not self.batch_first:
            full = full.transpose(0, 1)
        if not need_weights:
            return full, None
        weights = padded_attention_weights(q.reshape(shape), k.reshape(shape), hierarchy,
                                           valid, include_self=self.include_self)
        return full, weights.mean(1) if average_attn_weights else weights

    def _hierarchy(self, valid: Tensor) -> Hierarchy:
        spec = self.hierarchy
        if isinstance(spec, Hierarchy):
            hierarchy = spec
        elif callable(spec):
            hierarchy = spec(valid)
        else:
            return self._cache.get(valid, spec, False, valid.device)
        num_valid = int(valid.sum())
        if not isinstance(hierarchy, Hierarchy) or hierarchy.num_leaves != num_valid:
            raise ValueError(f"the hierarchy must be a Hierarchy with one leaf per valid "
                             f"position ({num_valid}), got {hierarchy!r}")
        return hierarchy

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.embed_dim}, heads={self.num_heads}, '
                f'include_self={self.include_self})')


def _attention_modules(model: Module) -> List[MultiheadAttention]:
    return [m for m in model.modules() if isinstance(m, MultiheadAttention)]


def inject_pyg(model: Module, layers: Optional[Sequence[int]] = None, hierarchy='flat',
               include_self: bool = True) -> Module:
    r"""Converts the ``torch.nn.MultiheadAttention`` modules inside
    :obj:`model` (all, or the :obj:`layers`-th ones in module order; the
    model itself if it is one) into :class:`HSAMultiheadAttention`, in place."""
    found = _attention_modules(model)
    if not found:
        raise TypeError(f"found no torch.nn.MultiheadAttention in {type(model).__name__}")
    chosen = range(len(found)) if layers is None else list(layers)
    bad = [i for i in chosen if not isinstance(i, int) or not 0 <= i < len(found)]
    if bad:
        raise ValueError(f"'layers' must hold indices in [0, {len(found)}), got {bad}")
    for i in chosen:
        HSAMultiheadAttention.convert(found[i], hierarchy, include_self)
    return model


def restore_pyg(model: Module) -> Module:
    r"""Turns every :class:`HSAMultiheadAttention` in :obj:`model` back into
    the attention module it was converted from."""
    for module in list(model.modules()):
        if isinstance(module, HSAMultiheadAttention) and hasattr(module, '_original_class'):
            module.revert()
    return model


def set_hierarchy(model: Module, hierarchy) -> None:
    r"""Sets the hierarchy of every :class:`HSAMultiheadAttention` in
    :obj:`model`, e.g. ``Hierarchy.from_hetero(batch)`` before each batch."""
    hierarchy = check_hierarchy_spec(hierarchy)
    for module in model.modules():
        if isinstance(module, HSAMultiheadAttention):
            module.hierarchy = hierarchy
