r"""The local block of point-cloud transformers: a pre-norm residual
:class:`~torch_geometric.nn.conv.PointTransformerConv` over a neighbourhood
graph of the points."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Dropout, LayerNorm, Sequential
from torch_geometric.nn import PointTransformerConv
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver

__all__ = ['PointTransformerBlock', 'mlp']


def mlp(in_channels: int, hidden: int, out_channels: int, act: str,
         dropout: float = 0.0) -> Sequential:
    return Sequential(Linear(in_channels, hidden), activation_resolver(act), Dropout(dropout),
                      Linear(hidden, out_channels))


class PointTransformerBlock(torch.nn.Module):
    r"""A pre-norm residual :class:`~torch_geometric.nn.conv.PointTransformerConv`
    (Zhao et al., 2021) over a neighbourhood graph of the points,
    :math:`\mathbf{h} + \mathrm{PT}(\mathrm{LN}(\mathbf{h}), \mathbf{p}, E)`,
    with the two small MLPs of PyG's point transformer example (relative
    coordinates -> channels, attention logits): the local block of
    :class:`HSAPointTransformer`.

    Args:
        channels (int): Feature size.
        dim (int, optional): Spatial dimension of the coordinates.
            (default: :obj:`3`)
        act (str, optional): The MLPs' activation. (default: ``'gelu'``)
    """
    def __init__(self, channels: int, dim: int = 3, act: str = 'gelu'):
        super().__init__()
        self.channels, self.dim = channels, dim
        self.norm = LayerNorm(channels)
        self.conv = PointTransformerConv(
            channels, channels, pos_nn=mlp(dim, channels, channels, act),
            attn_nn=mlp(channels, channels, channels, act))

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for child in self.children():
            reset(child)

    def forward(self, x: Tensor, coords: Tensor, edge_index: Tensor) -> Tensor:
        return x + self.conv(self.norm(x), coords, edge_index)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels}, dim={self.dim})'
