r"""The model of the paper's from-scratch experiments: the hierarchical
transformer encoder with a sample-level head."""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Dropout, Sequential
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.resolver import activation_resolver

from hsa_geo._checks import (
    as_bool,
    as_int,
    as_probability,
)
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.lone_leaves import LoneLeaves
from hsa_geo.nn.encoder import HSATransformer
from hsa_geo.nn.pool import leaf_type_pool, root_pool

__all__ = ['HTEPredictor']


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
