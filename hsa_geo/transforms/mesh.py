r"""Hierarchies over triangle meshes: faces grouped by an octree."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_branching, as_int, check_finite, is_index_dtype
from hsa_geo.transforms._base import HierarchyTransform
from hsa_geo.transforms.graph import GraphHierarchy
from hsa_geo.transforms.point_cloud import VoxelHierarchy

__all__ = ['MeshHierarchy', 'face_features', 'face_adjacency']


def face_adjacency(face: Tensor) -> Tensor:
    r"""``[2, E]`` pairs of faces that share an edge (both directions)."""
    num = face.size(1)
    edges = torch.cat([face[[0, 1]], face[[1, 2]], face[[2, 0]]], dim=1)   # [2, 3F]
    edges = torch.sort(edges, dim=0).values
    owner = torch.arange(num).repeat(3)
    key = edges[0] * (int(edges.max()) + 1) + edges[1]
    order = torch.argsort(key, stable=True)
    key, owner = key[order], owner[order]
    same = key[1:] == key[:-1]
    a, b = owner[:-1][same], owner[1:][same]
    return torch.cat([torch.stack([a, b]), torch.stack([b, a])], dim=1)


def face_features(pos: Tensor, face: Tensor):
    r"""Centroids ``[F, 3]``, unit normals ``[F, 3]`` and areas ``[F]`` of
    the triangles ``face`` (``[3, F]`` vertex indices) of vertices ``pos``."""
    tri = pos[face.t()]                                        # [F, 3, 3]
    centroid = tri.mean(1)
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = cross.norm(dim=-1)
    normal = cross / double_area.clamp(min=1e-12).unsqueeze(-1)
    return centroid, normal, double_area / 2


@functional_transform('mesh_hierarchy')
class MeshHierarchy(HierarchyTransform):
    r"""Builds a hierarchy over the faces of a triangle mesh (functional name:
    :obj:`mesh_hierarchy`): faces are the leaves, grouped by an octree over
    their centroids (see :class:`VoxelHierarchy`).

    Accepts a :class:`~torch_geometric.data.Data` with ``pos`` (vertices,
    ``[V, 3]``) and ``face`` (``[3, F]``) or a ``trimesh.Trimesh``.  The output
    keeps the vertices as node type ``'vertex'`` (with ``pos``; not part of the
    hierarchy) and the incidences as ``('vertex', 'of', 'face')`` edges; the
    leaf type ``'face'`` gets ``x = [centroid, normal, area]`` (7 features),
    ``pos`` (centroid), ``normal``, ``area``, and every input attribute named
    ``face_*`` (per-face labels, ...); vertex attributes (by PyG's
    :meth:`~torch_geometric.data.Data.is_node_attr`) stay with ``'vertex'``,
    the rest (``y``, ...) is kept globally.

    With ``method='faces'`` the faces are instead grouped by
    :class:`GraphHierarchy` (spectral windows of :obj:`branching`) over the
    face-adjacency graph (faces sharing an edge), so clusters follow the
    surface rather than space.

    Args:
        depth (int, optional): Octree levels. (default: 5)
        method (str, optional): ``'octree'`` or ``'faces'``.
            (default: ``'octree'``)
        branching (Sequence[int], optional): Window sizes for ``'faces'``.
            (default: ``(16, 16)``)
    """
    def __init__(self, depth: int = 5, method: str = 'octree',
                 branching: Sequence[int] = (16, 16)):
        if method not in ('octree', 'faces'):
            raise ValueError(f"'method' must be 'octree' or 'faces', got {method!r}")
        self.depth = as_int(depth, 'depth', minimum=1)
        self.branching = as_branching(branching)
        if method == 'octree':
            self.builder = VoxelHierarchy(self.depth, leaf_type='face')
        else:
            self.builder = GraphHierarchy(method='spectral', branching=self.branching,
                                          leaf_type='face')
        self.method = method

    def config(self):
        shape = dict(depth=self.depth) if self.method == 'octree' else \
            dict(branching=self.branching)
        return dict(method=self.method, **shape)

    def forward(self, mesh) -> HeteroData:
        if hasattr(mesh, 'vertices') and hasattr(mesh, 'faces'):   # trimesh
            mesh = Data(pos=torch.as_tensor(mesh.vertices, dtype=torch.float),
                        face=torch.as_tensor(mesh.faces, dtype=torch.long).t().contiguous())
        pos, face = getattr(mesh, 'pos', None), getattr(mesh, 'face', None)
        if pos is None or face is None:
            raise ValueError("a mesh needs 'pos' (vertices) and 'face' ([3, num_faces])")
        if not isinstance(pos, torch.Tensor) or not pos.is_floating_point() or \
                pos.dim() != 2 or pos.size(1) != 3:
            raise ValueError(f"'pos' (vertices) must be a floating-point [num_vertices, 3] "
                             f"tensor, got {getattr(pos, 'shape', type(pos).__name__)}")
        check_finite(pos, 'pos')
        if not isinstance(face, torch.Tensor) or not is_index_dtype(face) or \
                face.dim() != 2 or face.size(0) != 3 or face.size(1) == 0:
            raise ValueError(f"'face' must be an integer tensor of shape [3, num_faces > 0], "
                             f"got {getattr(face, 'shape', type(face).__name__)}")
        face = face.long()
        bad = (face < 0) | (face >= pos.size(0))
        if bool(bad.any()):
            raise ValueError(f"'face' holds vertex index {int(face[bad][0])}, but the mesh "
                             f"has {pos.size(0)} vertices (expected 0..{pos.size(0) - 1})")
        centroid, normal, area = face_features(pos.float(), face)
        faces = Data(pos=centroid, x=torch.cat([centroid, normal, area.unsqueeze(-1)], -1),
                     normal=normal, area=area)
        for key, value in mesh.items():
            if key.startswith('face_'):
                faces[key] = value
        if self.method == 'faces':
            faces.edge_index = face_adjacency(face)
        out = self.builder(faces)
        out['vertex'].pos = pos
        out['vertex', 'of', 'face'].edge_index = torch.stack(
            [face.t().reshape(-1), torch.arange(face.size(1)).repeat_interleave(3)])
        for key, value in mesh.items():
            if key in ('pos', 'face') or key.startswith('face_'):
                continue
            if isinstance(mesh, Data) and mesh.is_node_attr(key):
                out['vertex'][key] = value
            else:
                out[key] = value
        return out
