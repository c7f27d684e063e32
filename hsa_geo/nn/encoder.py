r"""Transformer blocks built on :class:`HSAConv`."""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Dropout, LayerNorm, ModuleList, Sequential
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver

from hsa_geo._checks import as_int, as_probability
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.nn.conv import HSAConv

__all__ = ['HSAEncoderLayer', 'HSATransformer']

STYLES = ('hte', 'prenorm')


class HSAEncoderLayer(torch.nn.Module):
    r"""One encoder layer with Hierarchical Self-Attention (Amizadeh et al.,
    NeurIPS 2025, arXiv 2509.15448), in one of two styles:

    * ``'hte'``, the paper's hierarchical transformer encoder: per-head
      projections, LayerNorm on queries and keys, HSA with a residual from the
      queries, heads concatenated, a linear map, LayerNorm, and a feed-forward
      network with a residual:

      .. math::
          \mathbf{h} = \mathrm{LN}\Big(W_O \big\Vert_h \big(\mathrm{HSA}_h
          + q_h\big)\Big), \qquad \mathbf{x}' = \mathbf{h} + \mathrm{FFN}(\mathbf{h})

    * ``'prenorm'``, the standard pre-norm block:
      :math:`\mathbf{h} = \mathbf{x} + \mathrm{HSA}(\mathrm{LN}(\mathbf{x}))`,
      :math:`\mathbf{x}' = \mathbf{h} + \mathrm{FFN}(\mathrm{LN}(\mathbf{h}))`.

    For multi-modal input (``'hte'`` only), :obj:`in_channels` is a dictionary
    over leaf node types: each type gets its own query/key/value projections
    into the common width (see :class:`HSAConv`); the output projection,
    LayerNorm and FFN are shared, and :meth:`forward` maps a dictionary of
    leaf features to a dictionary of outputs.

    Args:
        in_channels (int or Dict[str, int]): Input size (``-1`` for lazy), or
            one per leaf node type; for ``'prenorm'`` it must equal
            :obj:`channels`.
        channels (int): Output size, a multiple of :obj:`heads` unless
            :obj:`head_channels` is given.
        heads (int, optional): Attention heads. (default: :obj:`1`)
        head_channels (int, optional): Width of each head's queries, keys and
            values, when it is not ``channels // heads``: the heads
            (``heads * head_channels`` wide) are mapped to :obj:`channels` by
            the output projection (the paper's Table 1 encoder: 3 heads of
            width 128, output 128; ``'hte'`` only). (default: :obj:`None`)
        style (str, optional): ``'hte'`` or ``'prenorm'``. (default: ``'hte'``)
        ff_channels (int, optional): Hidden size of the feed-forward network.
            (default: ``2 * channels``)
        dropout (float, optional): Dropout after attention and in the FFN.
            (default: :obj:`0.0`)
        act (str, optional): The FFN's activation. (default: ``'gelu'``)
        pos_channels, include_self, causal: As in :class:`HSAConv`.
    """
    def __init__(self, in_channels: Union[int, Dict[str, int]], channels: int,
                 heads: int = 1, style: str = 'hte', ff_channels: Optional[int] = None,
                 dropout: float = 0.0, act: str = 'gelu',
                 pos_channels: Optional[int] = None, include_self: bool = False,
                 causal: bool = False, head_channels: Optional[int] = None):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"'style' must be one of {STYLES}, got {style!r}")
        channels = as_int(channels, 'channels', minimum=1)
        heads = as_int(heads, 'heads', minimum=1)
        dropout = as_probability(dropout, 'dropout')
        if head_channels is not None:
            head_channels = as_int(head_channels, 'head_channels', minimum=1)
        if head_channels is None and channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' "
                             f"({heads}), or give 'head_channels'")
        if head_channels is not None and style != 'hte':
            raise ValueError("'head_channels' needs style='hte' (a 'prenorm' layer keeps "
                             "its width through the attention)")
        if style == 'prenorm' and isinstance(in_channels, dict):
            raise ValueError("multi-modal 'in_channels' (a dict) needs style='hte': a "
                             "'prenorm' layer adds its input to the attention output")
        if style == 'prenorm' and in_channels not in (-1, channels):
            raise ValueError(f"a 'prenorm' layer keeps its width: 'in_channels' "
                             f"({in_channels}) must equal 'channels' ({channels})")
        self.in_channels, self.channels, self.heads = in_channels, channels, heads
        self.style = style
        self.dropout = dropout
        hte = style == 'hte'
        self.head_channels = head_channels or channels // heads
        self.attn = HSAConv(in_channels if hte else channels, self.head_channels,
                            heads=heads, pos_channels=pos_channels,
                            include_self=include_self, causal=causal, qk_norm=hte,
                            root_weight=False, query_residual=hte,
                            proj_channels=channels)
        self.norm1 = LayerNorm(channels)
        self.norm2 = None if hte else LayerNorm(channels)
        ff_channels = ff_channels or 2 * channels
        self.ffn = Sequential(Linear(channels, ff_channels), activation_resolver(act),
                              Dropout(dropout), Linear(ff_channels, channels),
                              Dropout(dropout))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for child in self.children():
            reset(child)

    def forward(self, x: Union[Tensor, Dict[str, Tensor]], hierarchy: Hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None):
        if self.style == 'hte':
            h = self.attn(x, hierarchy, pos=pos)
            if isinstance(h, dict):
                return {t: self._hte_tail(v) for t, v in h.items()}
            return self._hte_tail(h)
        h = self.attn(self.norm1(x), hierarchy, pos=pos)
        h = x + F.dropout(h, p=self.dropout, training=self.training)
        return h + self.ffn(self.norm2(h))

    def _hte_tail(self, h: Tensor) -> Tensor:
        h = self.norm1(F.dropout(h, p=self.dropout, training=self.training))
        return h + self.ffn(h)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, {self.channels}, '
                f'heads={self.heads}, style={self.style!r})')


class HSATransformer(torch.nn.Module):
    r"""A stack of :class:`HSAEncoderLayer` over the leaves of a hierarchy,
    compiled once per call and shared by every layer.

    With multi-modal input (:obj:`in_channels` a dictionary over leaf node
    types, ``'hte'`` style) the first layer projects each type on its own;
    after it every leaf lives in the common width, so the later layers are
    shared, and the output is a dictionary over the same types.

    Args:
        in_channels (int or Dict[str, int]): Input size (``-1`` for lazy), or
            one per leaf node type.
        channels (int): Hidden size.
        num_layers (int): Number of layers.
        heads (int, optional): Attention heads. (default: :obj:`1`)
        style (str, optional): ``'hte'`` or ``'prenorm'``. (default: ``'hte'``)
        **kwargs: Further arguments of :class:`HSAEncoderLayer`.
    """
    def __init__(self, in_channels: Union[int, Dict[str, int]], channels: int,
                 num_layers: int, heads: int = 1, style: str = 'hte', **kwargs):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"'num_layers' must be at least 1, got {num_layers}")
        if isinstance(in_channels, dict) and style != 'hte':
            raise ValueError("multi-modal 'in_channels' (a dict) needs style='hte'")
        self.in_channels, self.channels, self.num_layers = in_channels, channels, num_layers
        self.lin_in = None if style == 'hte' else Linear(in_channels, channels)
        first = in_channels if style == 'hte' else channels
        self.layers = ModuleList([
            HSAEncoderLayer(first if i == 0 else channels, channels, heads, style, **kwargs)
            for i in range(num_layers)
        ])

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if self.lin_in is not None:
            self.lin_in.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: Union[Tensor, Dict[str, Tensor]], hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None):
        r""":obj:`hierarchy` as in :meth:`HSAConv.forward`."""
        if self.lin_in is not None:
            x = self.lin_in(x)
        sizes = None
        for layer in self.layers:
            x = layer(x, hierarchy, pos=pos)
            if isinstance(x, dict):  # leaves share one width from here on
                sizes = {t: x[t].size(0) for t in hierarchy.leaf_types}
                x = torch.cat([x[t] for t in hierarchy.leaf_types])
        if sizes is None:
            return x
        return dict(zip(sizes, x.split(list(sizes.values()))))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, {self.channels}, '
                f'num_layers={self.num_layers})')
