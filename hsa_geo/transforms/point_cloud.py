r"""Hierarchies over point clouds: octree / quadtree voxel pyramids."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from hsa_geo.transforms._attributes import copy_attributes

__all__ = ['VoxelHierarchy']


@functional_transform('voxel_hierarchy')
class VoxelHierarchy(BaseTransform):
    r"""Builds an octree (3D) or quadtree (2D) voxel pyramid over ``data.pos``
    (functional name: :obj:`voxel_hierarchy`): points -> finest voxels -> ...
    -> one root, each voxel holding the non-empty voxels of half its size
    inside it (at most 8 in 3D, 4 in 2D; the finest voxels hold the points
    that fall in them).

    Every sample gets the same :obj:`depth` voxel levels (``'voxel1'`` is the
    finest, then ``'voxel2'``, ..., and ``'root'``), so clouds batch into one
    forest.  Position vectors ``hsa_pos`` are relative centroid offsets: the
    centroid of a node minus the centroid of its parent, divided by the
    parent's voxel size (so in [-1, 1]), of the cloud's spatial dimension.

    Args:
        depth (int, optional): Voxel levels; the finest voxels are
            ``2^-depth`` of the bounding box per axis. (default: 5)
        leaf_type (str, optional): The leaf node type. (default: ``'point'``)
    """
    def __init__(self, depth: int = 5, leaf_type: str = 'point'):
        if depth < 1:
            raise ValueError(f"'depth' must be at least 1, got {depth}")
        self.depth, self.leaf_type = depth, leaf_type

    def forward(self, data: Data) -> HeteroData:
        pos: Optional[Tensor] = getattr(data, 'pos', None)
        if pos is None:
            raise ValueError("'data.pos' is required: the voxel hierarchy is built "
                             "over point positions")
        if pos.dim() != 2 or pos.size(1) not in (2, 3) or pos.size(0) == 0:
            raise ValueError(f"'data.pos' must have shape [num_points > 0, 2 or 3], "
                             f"got {list(pos.shape)}")
        num, dim = pos.shape
        low, high = pos.min(0).values, pos.max(0).values
        extent = (high - low).clamp(min=1e-12)
        unit = ((pos - low) / extent).double()
        res = 1 << self.depth
        cell = (unit * res).long().clamp(0, res - 1)                 # [N, dim]

        out = HeteroData()
        copy_attributes(data, out, self.leaf_type, 'to')
        types = [self.leaf_type] + [f'voxel{i + 1}' for i in range(self.depth)] + ['root']
        member = torch.arange(num)           # the node of the current level per point
        centroid = pos.double()
        count = torch.ones(num, dtype=torch.float64)
        for level in range(self.depth + 1):
            if level < self.depth:
                key = cell >> level
                flat = key[:, 0]
                for axis in range(1, dim):
                    flat = flat * (res >> level) + key[:, axis]
                _, point_voxel = torch.unique(flat, return_inverse=True)
                size = extent.double() / (res >> level)                 # voxel size
            else:
                point_voxel = torch.zeros(num, dtype=torch.long)
                size = extent.double()
            units = int(member.max()) + 1
            parent = torch.zeros(units, dtype=torch.long)
            parent[member] = point_voxel
            groups = int(point_voxel.max()) + 1
            total = torch.zeros(groups, dim, dtype=torch.float64).index_add_(
                0, parent, centroid * count.view(-1, 1))
            weight = torch.zeros(groups, dtype=torch.float64).index_add_(0, parent, count)
            parent_centroid = total / weight.view(-1, 1)
            offset = (centroid - parent_centroid[parent]) / size
            child_type, parent_type = types[level], types[level + 1]
            out[parent_type].num_nodes = groups
            out[child_type, 'in', parent_type].edge_index = torch.stack(
                [torch.arange(units), parent])
            out[child_type].hsa_pos = offset.float()
            out[child_type].centroid = centroid.float()
            member, centroid, count = point_voxel, parent_centroid, weight
        out['root'].hsa_pos = torch.zeros(1, dim)
        out['root'].centroid = centroid.float()
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(depth={self.depth})'


def auto_depth(num_points: int, dim: int, per_voxel: int = 8) -> int:
    r"""A depth that leaves about :obj:`per_voxel` points per finest voxel for
    uniformly spread points."""
    return max(1, math.ceil(math.log(max(1, num_points / per_voxel)) / math.log(2 ** dim)))
