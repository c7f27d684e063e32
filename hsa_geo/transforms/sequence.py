r"""Hierarchies over sequences: fixed hopping windows."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_branching, as_even_dim, as_int
from hsa_geo.transforms._attributes import copy_attributes
from hsa_geo.transforms._base import HierarchyTransform

__all__ = ['SequenceHierarchy', 'window_parent', 'grid_positions']


def window_parent(length: int, branching: Sequence[int]) -> Tuple[Tensor, List[int]]:
    r"""Parent vector of fixed hopping windows over ``length`` leaves.

    Level by level, bottom-up, consecutive nodes are grouped into windows of
    ``branching[l]`` (the last window of a level takes what is left); above the
    last factor everything joins one root.  Every sequence gets the same
    ``len(branching)`` window levels plus the root, whatever its length (short
    sequences get windows of one, which HSA passes through unchanged), so that
    hierarchies of different lengths batch into one forest with the same node
    types.

    Returns ``(parent, level_sizes)``: nodes are numbered leaves first, then
    level by level; ``level_sizes[l]`` is the number of nodes of level ``l``
    (level 0: the leaves; the last level: the root).
    """
    length = as_int(length, 'length', minimum=1)
    branching = as_branching(branching)
    parents, sizes, offset, count = [], [length], 0, length
    for b in list(branching) + [None]:
        width = count if b is None else int(b)
        parents.append(offset + count + torch.arange(count) // width)
        offset += count
        count = (count + width - 1) // width
        sizes.append(count)
    parents.append(torch.full((1, ), -1, dtype=torch.long))
    return torch.cat(parents), sizes


POS_KINDS = ('sinusoidal', 'fourier')


def as_pos_kind(kind) -> str:
    r"""A builder's ``pos_kind`` argument, checked."""
    if kind not in POS_KINDS:
        raise ValueError(f"'pos_kind' must be one of {POS_KINDS}, got {kind!r}")
    return kind


def grid_positions(index: Tensor, dim: int, kind: str = 'sinusoidal',
                   seed: int = 0, scale: float = 1.0) -> Tensor:
    r"""1D-grid position vectors for positions :obj:`index` (a member's index
    within its family): sinusoidal (as in the Transformer, base 10000) or
    random Fourier features (fixed by :obj:`seed`), ``[len(index), dim]``."""
    dim = as_even_dim(dim, 'dim')
    pos = index.double().view(-1, 1)
    if kind == 'sinusoidal':
        freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2).double() / dim)
    elif kind == 'fourier':
        gen = torch.Generator().manual_seed(seed)
        freq = torch.randn(dim // 2, generator=gen, dtype=torch.float64) / scale
    else:
        raise ValueError(f"'kind' must be 'sinusoidal' or 'fourier', got {kind!r}")
    angle = pos * freq.view(1, -1)
    return torch.cat([angle.sin(), angle.cos()], dim=-1).float()


@functional_transform('sequence_hierarchy')
class SequenceHierarchy(HierarchyTransform):
    r"""Builds a hierarchy of fixed hopping windows over the nodes of a
    sequence (functional name: :obj:`sequence_hierarchy`), the setting of the
    zero-shot experiments of Amizadeh et al. (NeurIPS 2025): e.g.
    ``branching=(2, 4, 8, 16)`` puts every 2 tokens in a window, every 4
    windows in a larger one, and so on; leftovers form smaller last windows and
    everything above the last factor joins one root.  Every sequence gets all
    window levels (see :func:`window_parent`), so any lengths batch together.

    Returns a :class:`~torch_geometric.data.HeteroData` with the input's nodes
    as leaf type :obj:`leaf_type` (every node-level attribute kept, graph-level
    ones such as ``y`` kept globally), one node type per window level
    (``'window1'``, ``'window2'``, ..., the top one named ``'root'``), an edge
    type ``(child_type, 'in', parent_type)`` per level, and for every node the
    position of the node inside its window as 1D-grid position vectors in
    ``hsa_pos``.

    Args:
        branching (Sequence[int]): Window sizes, bottom-up, each at least 2.
        pos_dim (int, optional): Size of the position vectors. (default: 16)
        pos_kind (str, optional): ``'sinusoidal'`` or ``'fourier'``.
            (default: ``'sinusoidal'``)
        leaf_type (str, optional): The leaf node type. (default: ``'token'``)
        seed (int, optional): Seed of the Fourier features. (default: 0)
    """
    def __init__(self, branching: Sequence[int], pos_dim: int = 16,
                 pos_kind: str = 'sinusoidal', leaf_type: str = 'token',
                 seed: int = 0):
        self.branching = as_branching(branching)
        if pos_kind not in ('sinusoidal', 'fourier'):
            raise ValueError(f"'pos_kind' must be 'sinusoidal' or 'fourier', got {pos_kind!r}")
        self.pos_dim, self.pos_kind = as_even_dim(pos_dim), pos_kind
        self.leaf_type, self.seed = leaf_type, as_int(seed, 'seed')

    def config(self):
        seed = dict(seed=self.seed) if self.pos_kind == 'fourier' else {}
        return dict(branching=self.branching, pos_dim=self.pos_dim,
                    pos_kind=self.pos_kind, **seed, leaf_type=self.leaf_type)

    def forward(self, data: Data) -> HeteroData:
        length = self.num_nodes_of(data, 'sequence',
                                   'nodes: a sequence of length zero has no hierarchy')
        parent, sizes = window_parent(length, self.branching)
        out = HeteroData()
        copy_attributes(data, out, self.leaf_type, 'to')
        types = [self.leaf_type] + [f'window{i}' for i in range(1, len(sizes) - 1)]
        types.append('root')
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        for level, (kind, size) in enumerate(zip(types, sizes)):
            nodes = torch.arange(offsets[level], offsets[level + 1])
            if level > 0:
                out[kind].num_nodes = size
            up = parent[nodes]
            if level + 1 < len(sizes):
                out[kind, 'in', types[level + 1]].edge_index = torch.stack(
                    [nodes - offsets[level], up - offsets[level + 1]])
                first = torch.cat([torch.ones(1, dtype=torch.bool), up[1:] != up[:-1]])
                start = torch.cummax(torch.where(first, torch.arange(size), 0), 0)[0]
                index = torch.arange(size) - start           # index within the window
            else:
                index = torch.zeros(size, dtype=torch.long)  # the root
            out[kind].hsa_pos = grid_positions(index, self.pos_dim, self.pos_kind,
                                               self.seed)
        return out
