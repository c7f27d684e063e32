r"""GPS-style hybrid layer with HSA as its global attention."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Dropout, Linear, Sequential
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver
from torch_geometric.typing import Adj

from hsa_geo._checks import (
    as_int,
    as_kwargs,
    as_module_or_none,
    as_probability,
    check_node_features,
)
from hsa_geo.flat_families import FlatFamilies
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike
from hsa_geo.nn.conv import HSAConv, _check_hierarchy

__all__ = ['HSAGPSConv']


class HSAGPSConv(torch.nn.Module):
    r"""The GPS layer of `"Recipe for a General, Powerful, Scalable Graph
    Transformer" <https://arxiv.org/abs/2205.12454>`_ with Hierarchical
    Self-Attention (:class:`HSAConv`, Amizadeh et al., NeurIPS 2025) as its
    global attention, mirroring :class:`torch_geometric.nn.conv.GPSConv`:

    .. math::
        \mathbf{h}_L &= \mathrm{Norm}_1(\mathrm{MPNN}(\mathbf{x}) + \mathbf{x}),
        \quad \mathbf{h}_G = \mathrm{Norm}_2(\mathrm{HSA}(\mathbf{x}) + \mathbf{x}) \\
        \mathbf{x}' &= \mathrm{Norm}_3(\mathbf{h} + \mathrm{MLP}(\mathbf{h})),
        \quad \mathbf{h} = \mathbf{h}_L + \mathbf{h}_G

    Swapping ``GPSConv(channels, conv, heads=heads)`` for
    ``HSAGPSConv(channels, conv, heads=heads)`` is a one-line change: without a
    ``hierarchy`` argument every graph of the batch is one flat family, and the
    layer computes exactly what ``GPSConv(attn_type='multihead')`` computes.
    Pass a :class:`~hsa_geo.Hierarchy` whose leaves are the batch's nodes to
    attend hierarchically in time linear in the number of nodes.

    Args:
        channels (int): Size of each input sample.
        conv (MessagePassing, optional): The local message-passing layer (a
            :class:`torch.nn.Module` instance), or :obj:`None` for attention
            alone.
        heads (int, optional): Number of attention heads, dividing
            :obj:`channels`. (default: :obj:`1`)
        dropout (float, optional): Dropout after the local layer, the attention
            and in the MLP, in ``[0, 1)``. (default: :obj:`0.0`)
        act (str or Callable, optional): The MLP's non-linearity.
            (default: :obj:`"relu"`)
        act_kwargs (Dict[str, Any], optional): Arguments of :obj:`act`.
        norm (str or Callable, optional): The normalization.
            (default: :obj:`"batch_norm"`)
        norm_kwargs (Dict[str, Any], optional): Arguments of :obj:`norm`.
        attn_type (str, optional): Accepted and ignored, so that
            ``GPSConv(..., attn_type='multihead')`` becomes ``HSAGPSConv`` by
            changing the class name alone: the global attention is always
            HSA (``'performer'`` is refused, since a kernel approximation is
            not what this layer computes). (default: :obj:`'multihead'`)
        attn_kwargs (Dict[str, Any], optional): Arguments of the inner
            :class:`HSAConv` (defaults: ``include_self=True``,
            ``qk_norm=False``, ``root_weight=False``, which make a flat
            hierarchy standard multi-head attention).  ``GPSConv``'s
            ``dropout`` key is the attention dropout here too.
    """
    def __init__(
        self,
        channels: int,
        conv: Optional[torch.nn.Module],
        heads: int = 1,
        dropout: float = 0.0,
        act: str = 'relu',
        act_kwargs: Optional[Dict[str, Any]] = None,
        norm: Optional[str] = 'batch_norm',
        norm_kwargs: Optional[Dict[str, Any]] = None,
        attn_type: str = 'multihead',
        attn_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if attn_type != 'multihead':
            raise ValueError(f"'attn_type' is accepted for GPSConv compatibility and "
                             f"must be 'multihead' (HSA replaces exact multi-head "
                             f"attention), got {attn_type!r}")
        channels = as_int(channels, 'channels', minimum=1)
        heads = as_int(heads, 'heads', minimum=1)
        if channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' "
                             f"({heads})")
        conv = as_module_or_none(conv, 'conv')
        dropout = as_probability(dropout, 'dropout')
        attn_kwargs = _attn_options(attn_kwargs)
        act_kwargs = as_kwargs(act_kwargs, 'act_kwargs')
        norm_kwargs = as_kwargs(norm_kwargs, 'norm_kwargs')
        self.channels = channels
        self.conv = conv
        self.heads = heads
        self.dropout = dropout
        options = dict(include_self=True, qk_norm=False, root_weight=False)
        options.update(attn_kwargs)
        self.attn = HSAConv(channels, channels // heads, heads=heads, concat=True,
                            **options)
        self.mlp = Sequential(
            Linear(channels, channels * 2),
            _resolve(activation_resolver, 'act', act, act_kwargs),
            Dropout(dropout),
            Linear(channels * 2, channels),
            Dropout(dropout),
        )
        # no norm for an absent local layer: parameters that never get a
        # gradient stall DistributedDataParallel's gradient reduction
        self.norm1 = _resolve(normalization_resolver, 'norm', norm, norm_kwargs, channels) \
            if conv is not None else None
        self.norm2 = _resolve(normalization_resolver, 'norm', norm, norm_kwargs, channels)
        self.norm3 = _resolve(normalization_resolver, 'norm', norm, norm_kwargs, channels)
        self.norm_with_batch = False
        if self.norm2 is not None:
            signature = inspect.signature(self.norm2.forward)
            self.norm_with_batch = 'batch' in signature.parameters
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if self.conv is not None:
            self.conv.reset_parameters()
        self.attn.reset_parameters()
        reset(self.mlp)
        for norm in (self.norm1, self.norm2, self.norm3):
            if norm is not None:
                norm.reset_parameters()

    def _norm(self, norm, h: Tensor, batch: Optional[Tensor]) -> Tensor:
        if norm is None:
            return h
        return norm(h, batch=batch) if self.norm_with_batch else norm(h)

    def forward(
        self,
        x: Tensor,
        edge_index: Adj,
        batch: Optional[Tensor] = None,
        hierarchy: Optional[Hierarchy] = None,
        pos: Optional[Tensor] = None,
        **kwargs,
    ) -> Tensor:
        r"""Runs the layer.  :obj:`hierarchy` has the batch's nodes as its
        leaves (default: one flat family per graph, from :obj:`batch`);
        :obj:`pos` are the hierarchy's node position vectors (needs
        ``attn_kwargs=dict(pos_channels=...)``); other keyword arguments go to
        the local layer."""
        if hierarchy is not None:
            _check_hierarchy(hierarchy)
        check_node_features(x, 'x', self.channels, 'channels', _num_leaves(hierarchy))
        hs = []
        if self.conv is not None:  # local message passing
            h = self.conv(x, edge_index, **kwargs)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm1, h + x, batch))
        if hierarchy is None:  # one flat family per graph, built once per batch
            hierarchy = FlatFamilies(batch)
        h = self.attn(x, hierarchy, pos=pos)
        h = F.dropout(h, p=self.dropout, training=self.training)
        hs.append(self._norm(self.norm2, h + x, batch))
        out = sum(hs)
        out = out + self.mlp(out)
        return self._norm(self.norm3, out, batch)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, conv={self.conv}, '
                f'heads={self.heads})')


# set by the layer itself, so not options of its HSAConv
_FIXED = ('in_channels', 'out_channels', 'heads', 'concat')


def _attn_options(attn_kwargs) -> Dict[str, Any]:
    options = as_kwargs(attn_kwargs, 'attn_kwargs')
    fixed = [key for key in options if key in _FIXED]
    if fixed:
        raise TypeError(f"'attn_kwargs' may not set {fixed[0]!r}: the layer sets "
                        f"{', '.join(_FIXED)} of its HSAConv itself (pass 'heads' to "
                        f"the layer)")
    known = inspect.signature(HSAConv.__init__).parameters
    unknown = [key for key in options if key not in known]
    if unknown:
        takes = ', '.join(k for k in known if k != 'self' and k not in _FIXED)
        raise TypeError(f"'attn_kwargs' has {unknown[0]!r}, which is not an argument of "
                        f"HSAConv (it takes {takes})")
    return options


def _resolve(resolver, name: str, query, kwargs: Dict[str, Any], *args):
    r"""PyG's activation / normalization resolver, its errors naming the
    argument they came from."""
    try:
        return resolver(query, *args, **kwargs)
    except ValueError as error:
        if 'Could not resolve' not in str(error):
            raise
        kind = 'an activation' if name == 'act' else 'a normalization'
        raise ValueError(f"'{name}' must be the name of {kind} PyG resolves (e.g. "
                         f"{'relu' if name == 'act' else 'batch_norm'!r}), a module or "
                         f"None; {error}") from None
    except TypeError as error:
        if not kwargs:
            raise
        raise TypeError(f"'{name}_kwargs' do not fit {name}={query!r}: {error}") from None


def _num_leaves(hierarchy) -> Optional[int]:
    r"""The leaf count the layer's input rows must match, when the hierarchy
    has one (a FlatFamilies or no hierarchy takes any number of rows); none
    under torch.compile, where sizes are not compared."""
    if torch.compiler.is_compiling():
        return None
    return hierarchy.num_leaves if isinstance(hierarchy, HierarchyLike) else None
