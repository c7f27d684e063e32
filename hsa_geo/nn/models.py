r"""Ready-made models: sample-level prediction with the paper's hierarchical
transformer encoder, node-level prediction with HSA as a graph transformer's
global attention."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Dropout, Sequential
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.resolver import activation_resolver

from hsa_geo._checks import (as_bool, as_in_channels, as_int, as_module_or_none,
                             as_probability, check_node_features)
from hsa_geo.functional import LoneLeaves
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.nn.conv import _check_hierarchy
from hsa_geo.nn.encoder import HSATransformer
from hsa_geo.nn.gps import _num_leaves
from hsa_geo.nn.point import DEFAULT
from hsa_geo.nn.pool import leaf_type_pool, root_pool

__all__ = ['HTEPredictor', 'HSAGraphTransformer']


class HTEPredictor(torch.nn.Module):
    r"""The model of the from-scratch experiments of `"Hierarchical
    Self-Attention: Generalizing Neural Attention Mechanics to Multi-Scale
    Problems" <https://arxiv.org/abs/2509.15448>`_ (Amizadeh et al., NeurIPS
    2025, Sections 5.1-5.2): :obj:`num_layers` hierarchical transformer
    encoder layers (:class:`HSAEncoderLayer`, ``style='hte'``) over the leaves,
    the mean of each tree's leaves, and an MLP head with one hidden layer:

    .. math::
        \hat{y}_T = \mathrm{MLP}\Big(\frac{1}{|T|} \sum_{i \in T}
        \mathrm{HTE}(\mathbf{X})_i\Big)

    for every tree :math:`T` of the (batched) hierarchy.

    The attention is chosen by the hierarchy passed to :meth:`forward`, so
    that models compared with each other have identical parameters: the real
    hierarchy gives HSA; the same leaves under one flat root per sample (see
    :class:`~hsa_geo.transforms.FlatHierarchy`) give softmax attention (FSA);
    ``attention=False`` makes every leaf its own tree inside the encoder
    (:class:`~hsa_geo.functional.LoneLeaves`: its attention term is zero, a
    DeepSet), while the pooling still follows the hierarchy.

    Args:
        in_channels (int or Dict[str, int]): Leaf feature size, or one per leaf
            node type for multi-modal input (each type gets its own
            query/key/value projections).
        channels (int): Hidden size, a multiple of :obj:`heads`.
        out_channels (int): Output size (classes, or regression targets).
        heads (int, optional): Attention heads. (default: :obj:`4`)
        num_layers (int, optional): Encoder layers. (default: :obj:`1`)
        pos_channels (int or Dict, optional): Size of the position vectors
            passed to :meth:`forward`, one integer or one entry per projection
            (see :class:`HSAConv`). (default: :obj:`None`)
        head_channels (int, optional): Width of each attention head, when not
            ``channels // heads`` (see :class:`HSAEncoderLayer`).
            (default: :obj:`None`)
        pool_leaf_types (bool, optional): Pool each leaf type on its own (the
            mean of each modality's leaves) and average those means over the
            types a tree has, so that a modality with many leaves (a name's
            tokens) does not outweigh one with few (a molecule's atoms); else
            the mean of all leaves, as the paper does. (default: :obj:`False`)
        attention (bool, optional): Attend over the hierarchy given to
            :meth:`forward` (else no leaf attends: a DeepSet with the same
            parameters). (default: :obj:`True`)
        dropout (float, optional): Dropout in the encoder and the head.
            (default: :obj:`0.0`)
        act (str, optional): Activation of the head and the FFN.
            (default: ``'gelu'``)
    """
    def __init__(self, in_channels: Union[int, Dict[str, int]], channels: int,
                 out_channels: int, heads: int = 4, num_layers: int = 1,
                 pos_channels: Optional[Union[int, Dict[str, int]]] = None,
                 attention: bool = True, dropout: float = 0.0, act: str = 'gelu',
                 head_channels: Optional[int] = None, pool_leaf_types: bool = False):
        super().__init__()
        attention = as_bool(attention, 'attention')
        self.pool_leaf_types = as_bool(pool_leaf_types, 'pool_leaf_types')
        channels = as_int(channels, 'channels', minimum=1)
        out_channels = as_int(out_channels, 'out_channels', minimum=1)
        heads = as_int(heads, 'heads', minimum=1)
        dropout = as_probability(dropout, 'dropout')
        self.in_channels, self.channels, self.out_channels = in_channels, channels, out_channels
        self.attention = attention
        self.encoder = HSATransformer(in_channels, channels, num_layers, heads=heads,
                                      style='hte', pos_channels=pos_channels,
                                      dropout=dropout, act=act,
                                      head_channels=head_channels)
        self.head = Sequential(Linear(channels, channels), activation_resolver(act),
                               Dropout(dropout), Linear(channels, out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.encoder.reset_parameters()
        for module in self.head:
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def forward(self, x: Union[Tensor, Dict[str, Tensor]], hierarchy: Hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None) -> Tensor:
        r"""Returns ``[num_trees, out_channels]``, one row per root of
        :obj:`hierarchy` in node order (for a batch from PyG's
        :class:`~torch_geometric.loader.DataLoader`: the samples in order).

        Args:
            x (Tensor or Dict[str, Tensor]): Leaf features, as in
                :class:`HSAConv`.
            hierarchy (Hierarchy): The (batched) compiled hierarchy
                (``batch.hierarchy`` of a
                :class:`~hsa_geo.loader.HierarchyLoader`).
            pos (Tensor or Dict[str, Tensor], optional): Position vectors of
                its nodes, as in :class:`HSAConv`.
        """
        attend = hierarchy if self.attention else LoneLeaves(hierarchy)
        out = self.encoder(x, attend, pos=pos if self.attention else None)
        if self.pool_leaf_types:
            return self.head(leaf_type_pool(out, hierarchy))
        if isinstance(out, dict):
            out = torch.cat([out[t] for t in hierarchy.leaf_types])
        return self.head(root_pool(out, hierarchy))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, {self.channels}, '
                f'{self.out_channels}, attention={self.attention!r}'
                + (', pool_leaf_types=True)' if self.pool_leaf_types else ')'))


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
