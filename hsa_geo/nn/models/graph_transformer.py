r"""Node-level prediction with HSA as a graph transformer's global attention."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear

from hsa_geo._checks import (
    as_in_channels,
    as_int,
    as_module_or_none,
    as_probability,
    check_node_features,
)
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.nn.conv import _check_hierarchy
from hsa_geo.nn.gps import _num_leaves
from hsa_geo.nn.models.default import DEFAULT

__all__ = ['HSAGraphTransformer']


class HSAGraphTransformer(torch.nn.Module):
    r"""A node-level graph transformer whose global attention is
    Hierarchical Self-Attention (`"Hierarchical Self-Attention: Generalizing
    Neural Attention Mechanics to Multi-Scale Problems"
    <https://arxiv.org/abs/2509.15448>`_, Amizadeh et al., NeurIPS 2025) over
    a hierarchy of the graph's nodes (e.g. nested communities from
    :class:`~hsa_geo.transforms.GraphHierarchy`): a linear input layer,
    :obj:`num_layers` GPS layers (:class:`HSAGPSConv`: local message passing
    plus HSA over all nodes, in time linear in the number of nodes), and a
    linear output layer:

    .. math::
        \mathbf{H}^{(0)} = \mathbf{X} \mathbf{W}_{\text{in}}, \quad
        \mathbf{H}^{(l)} = \mathrm{GPS}_{\mathrm{HSA}}(\mathbf{H}^{(l-1)},
        \mathcal{E}, \mathcal{T}), \quad
        \hat{\mathbf{Y}} = \mathbf{H}^{(L)} \mathbf{W}_{\text{out}}

    The same model trains full-batch (the whole graph's hierarchy) or on the
    sub-hierarchies of :class:`~hsa_geo.loader.SubtreeLoader`, and across
    processes with a :class:`~hsa_geo.distributed.ShardedHierarchy` (under
    ``DistributedDataParallel`` its attention is exact and global; use
    ``norm=None``, a per-node norm or ``SyncBatchNorm`` for batch statistics
    over all ranks; the local layers see the edges inside each rank's share).

    Args:
        in_channels (int): Node feature size (``-1``: inferred from the first
            input, as PyG's lazy layers do).
        hidden_channels (int): Hidden size, a multiple of :obj:`heads`.
        out_channels (int): Output size (classes).
        num_layers (int, optional): GPS layers. (default: :obj:`2`)
        heads (int, optional): Attention heads. (default: :obj:`4`)
        conv (torch.nn.Module, optional): The local message-passing layer of
            every GPS layer, copied per layer with fresh parameters, or
            :obj:`None` for attention alone. (default: :obj:`DEFAULT`,
            ``SAGEConv(hidden_channels, hidden_channels)``)
        pos_channels (int or Dict, optional): Size of the hierarchy's position
            vectors given to :meth:`forward` (see :class:`HSAConv`).
            (default: :obj:`None`)
        dropout (float, optional): Dropout of the input and of every GPS layer.
            (default: :obj:`0.0`)
        norm (str, optional): Normalisation of the GPS layers (PyG's
            resolver names; :obj:`None` for none). (default: ``'batch_norm'``)
        norm_kwargs (Dict[str, Any], optional): Its arguments, e.g.
            ``{'mode': 'node'}`` for a per-node ``'layer_norm'``, which is
            exact under ``DistributedDataParallel`` on any device.
        attn_kwargs (Dict[str, Any], optional): Further arguments of each
            layer's :class:`HSAConv` (e.g. ``include_self``).
    """
    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, heads: int = 4, conv: Optional[torch.nn.Module] = DEFAULT,
                 pos_channels: Optional[Union[int, Dict[str, int]]] = None,
                 dropout: float = 0.0, norm: Optional[str] = 'batch_norm',
                 norm_kwargs: Optional[Dict[str, Any]] = None,
                 attn_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__()
        from torch_geometric.nn import SAGEConv

        from hsa_geo.nn.gps import HSAGPSConv
        in_channels = as_in_channels(in_channels)
        hidden_channels = as_int(hidden_channels, 'hidden_channels', minimum=1)
        out_channels = as_int(out_channels, 'out_channels', minimum=1)
        num_layers = as_int(num_layers, 'num_layers', minimum=1)
        heads = as_int(heads, 'heads', minimum=1)
        if hidden_channels % heads != 0:
            raise ValueError(f"'hidden_channels' ({hidden_channels}) must be divisible by "
                             f"'heads' ({heads})")
        dropout = as_probability(dropout, 'dropout')
        if conv is DEFAULT:
            conv = SAGEConv(hidden_channels, hidden_channels)
        conv = as_module_or_none(conv, 'conv')
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.out_channels, self.num_layers = out_channels, num_layers
        self.dropout = dropout
        attn_kwargs = dict(attn_kwargs or {})
        if pos_channels is not None:
            attn_kwargs['pos_channels'] = pos_channels
        self.lin_in = Linear(in_channels, hidden_channels)
        self.layers = torch.nn.ModuleList([
            HSAGPSConv(hidden_channels, copy.deepcopy(conv), heads=heads, dropout=dropout,
                       norm=norm, norm_kwargs=norm_kwargs, attn_kwargs=attn_kwargs)
            for _ in range(num_layers)])
        self.lin_out = Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin_in.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        self.lin_out.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, hierarchy: Hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None) -> Tensor:
        r"""Returns ``[num_nodes, out_channels]``.

        Args:
            x (Tensor): Node features ``[num_nodes, in_channels]``, the
                hierarchy's leaves in order.
            edge_index (Tensor): The graph's edges, for the local layers.
            hierarchy (Hierarchy): The compiled hierarchy over the nodes.
            pos (Tensor or Dict[str, Tensor], optional): Position vectors of
                its nodes (e.g. ``data.hsa_pos_dict``).
        """
        _check_hierarchy(hierarchy)
        check_node_features(x, 'x', self.in_channels, 'in_channels', _num_leaves(hierarchy))
        h = self.lin_in(torch.nn.functional.dropout(x, self.dropout, self.training))
        for layer in self.layers:
            h = layer(h, edge_index, hierarchy=hierarchy, pos=pos)
        return self.lin_out(h)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
                f'{self.out_channels}, num_layers={self.num_layers})')
