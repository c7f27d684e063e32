r"""Hierarchies over point clouds: octree / quadtree voxel pyramids."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_finite_float, as_int, check_finite
from hsa_geo.transforms._attributes import copy_attributes
from hsa_geo.transforms._base import HierarchyTransform

# the voxel keys of all axes are packed into one int64 (63 bits over 3 axes)
MAX_DEPTH = 20

__all__ = ['VoxelHierarchy', 'FPSHierarchy', 'auto_depth', 'farthest_point_sampling']


@functional_transform('voxel_hierarchy')
class VoxelHierarchy(HierarchyTransform):
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
        depth (int, optional): Voxel levels, 1 to 20; the finest voxels are
            ``2^-depth`` of the bounding box per axis. (default: 5)
        leaf_type (str, optional): The leaf node type. (default: ``'point'``)
    """
    def __init__(self, depth: int = 5, leaf_type: str = 'point'):
        self.depth = as_int(depth, 'depth', minimum=1, maximum=MAX_DEPTH)
        self.leaf_type = leaf_type

    def config(self):
        return dict(depth=self.depth, leaf_type=self.leaf_type)

    def forward(self, data: Data) -> HeteroData:
        pos = _points(data, 'the voxel hierarchy')
        if pos.size(1) not in (2, 3):
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


def _points(data: Data, what: str) -> Tensor:
    # data.pos checked: a finite floating-point [N > 0, dim] tensor
    if not isinstance(data, Data):
        raise TypeError(f"'data' must be a torch_geometric.data.Data point cloud, got "
                        f"{type(data).__name__}")
    pos: Optional[Tensor] = getattr(data, 'pos', None)
    if pos is None:
        raise ValueError(f"'data.pos' is required: {what} is built over point positions")
    if not isinstance(pos, Tensor) or not pos.is_floating_point():
        raise TypeError(f"'data.pos' must be a floating-point tensor, got "
                        f"{getattr(pos, 'dtype', type(pos).__name__)}")
    if pos.dim() != 2 or pos.size(0) == 0 or pos.size(1) == 0:
        raise ValueError(f"'data.pos' must have shape [num_points > 0, dim], got "
                         f"{list(pos.shape)}")
    check_finite(pos, 'data.pos')
    return pos


def auto_depth(num_points: int, dim: int, per_voxel: int = 8) -> int:
    r"""A depth that leaves about :obj:`per_voxel` points per finest voxel for
    points spread uniformly over a :obj:`dim`-dimensional region.  Points
    sampled on a surface fill about two dimensions even in 3D: pass ``dim=2``
    for them, or the finest voxels hold far more points than
    :obj:`per_voxel` (and the sibling families, whose cost grows with the
    square of their size, grow with them)."""
    return max(1, math.ceil(math.log(max(1, num_points / per_voxel)) / math.log(2 ** dim)))


def farthest_point_sampling(pos: Tensor, count: int, seed: int = 0) -> Tensor:
    r"""Indices of :obj:`count` points chosen by farthest point sampling (the
    first one drawn with :obj:`seed`); ``O(count * N)``."""
    num = pos.size(0)
    count = max(1, min(count, num))
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.empty(count, dtype=torch.long)
    chosen[0] = int(torch.randint(num, (1, ), generator=gen))
    dist = (pos - pos[chosen[0]]).pow(2).sum(-1)
    for i in range(1, count):
        chosen[i] = int(dist.argmax())
        dist = torch.minimum(dist, (pos - pos[chosen[i]]).pow(2).sum(-1))
    return chosen


def _nearest(pos: Tensor, centers: Tensor, chunk: int = 4096) -> Tensor:
    out = torch.empty(pos.size(0), dtype=torch.long)
    for i in range(0, pos.size(0), chunk):
        out[i:i + chunk] = torch.cdist(pos[i:i + chunk], centers).argmin(1)
    return out


@functional_transform('fps_hierarchy')
class FPSHierarchy(HierarchyTransform):
    r"""Builds a hierarchy of farthest-point-sampling clusters over
    ``data.pos`` (functional name: :obj:`fps_hierarchy`), as in PointNet++:
    at each level a fraction :obj:`ratio` of the current centres is chosen by
    farthest point sampling and every centre joins its nearest chosen one
    (a Voronoi cell); the last level's centres join one root.

    Same layout as :class:`VoxelHierarchy` (``'cluster1'`` ... ``'root'``,
    relative centroid offsets in ``hsa_pos``, divided by the largest offset of
    the family so they lie in [-1, 1]).  Sampling costs ``O(N^2 ratio)``: for
    clouds of up to about 10^5 points; use :class:`VoxelHierarchy` beyond.

    Args:
        ratios (Sequence[float]): Kept fraction per level, bottom-up, each in
            (0, 1). (default: ``(0.25, 0.25)``)
        seed (int, optional): Seed of the first sample. (default: 0)
        leaf_type (str, optional): The leaf node type. (default: ``'point'``)
    """
    def __init__(self, ratios=(0.25, 0.25), seed: int = 0, leaf_type: str = 'point'):
        if isinstance(ratios, (str, bytes)) or not hasattr(ratios, '__len__') or not ratios:
            raise ValueError(f"'ratios' must be a non-empty sequence of fractions in "
                             f"(0, 1), got {ratios!r}")
        ratios = tuple(as_finite_float(r, f'ratios[{i}]') for i, r in enumerate(ratios))
        if any(not 0 < r < 1 for r in ratios):
            raise ValueError(f"every ratio must be in (0, 1), got {list(ratios)}")
        self.ratios, self.seed, self.leaf_type = ratios, as_int(seed, 'seed'), leaf_type

    def config(self):
        return dict(ratios=self.ratios, seed=self.seed, leaf_type=self.leaf_type)

    def forward(self, data: Data) -> HeteroData:
        pos = _points(data, 'the FPS hierarchy')
        out = HeteroData()
        copy_attributes(data, out, self.leaf_type, 'to')
        types = [self.leaf_type] + [f'cluster{i + 1}' for i in range(len(self.ratios))]
        types.append('root')
        centers = pos.float()
        for level in range(len(self.ratios) + 1):
            if level < len(self.ratios):
                count = math.ceil(centers.size(0) * self.ratios[level])
                chosen = farthest_point_sampling(centers, count, self.seed + level)
                parent = _nearest(centers, centers[chosen])
            else:
                parent = torch.zeros(centers.size(0), dtype=torch.long)
            groups = int(parent.max()) + 1
            mean = torch.zeros(groups, centers.size(1)).index_add_(0, parent, centers)
            mean = mean / torch.bincount(parent, minlength=groups).clamp(min=1).view(-1, 1)
            offset = centers - mean[parent]
            radius = torch.zeros(groups).scatter_reduce_(
                0, parent, offset.norm(dim=-1), reduce='amax', include_self=True)
            out[types[level]].hsa_pos = offset / radius[parent].clamp(min=1e-12).view(-1, 1)
            out[types[level + 1]].num_nodes = groups
            out[types[level], 'in', types[level + 1]].edge_index = torch.stack(
                [torch.arange(centers.size(0)), parent])
            centers = mean
        out['root'].hsa_pos = torch.zeros(1, pos.size(1))
        return out
