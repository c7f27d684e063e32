import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy
from hsa_geo.transforms import MeshHierarchy, face_features


def _tetrahedron():
    pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    face = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]])
    return Data(pos=pos, face=face, y=torch.tensor([3]), face_label=torch.arange(4))


def test_face_features():
    mesh = _tetrahedron()
    centroid, normal, area = face_features(mesh.pos, mesh.face)
    assert torch.allclose(area[:3], torch.full((3, ), 0.5))
    assert torch.allclose(normal.norm(dim=-1), torch.ones(4))
    assert torch.allclose(centroid[0], torch.tensor([1 / 3, 1 / 3, 0]))


def test_mesh_hierarchy_and_batching():
    out = MeshHierarchy(depth=2)(_tetrahedron())
    assert out['face'].x.shape == (4, 7) and out['face'].face_label.tolist() == [0, 1, 2, 3]
    assert out['vertex'].pos.shape == (4, 3) and out.y.tolist() == [3]
    h = Hierarchy.from_hetero(out)
    assert h.leaf_types == ('face', ) and h.num_leaves == 4 and h.num_roots == 1
    batch = next(iter(DataLoader([out, MeshHierarchy(depth=2)(_tetrahedron())], batch_size=2)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 2 and h.num_leaves == 8
    assert batch['vertex', 'of', 'face'].edge_index[0].max() == 7   # vertices offset


def test_trimesh_input_and_errors():
    trimesh = pytest.importorskip('trimesh')
    out = MeshHierarchy(depth=3)(trimesh.creation.icosphere(subdivisions=2))
    assert out['face'].num_nodes == 320
    assert Hierarchy.from_hetero(out).num_roots == 1
    with pytest.raises(ValueError, match="needs 'pos'"):
        MeshHierarchy()(Data(pos=torch.randn(3, 3)))


def test_face_adjacency_method():
    from hsa_geo.transforms import MeshHierarchy
    from hsa_geo.transforms.mesh import face_adjacency
    mesh = _tetrahedron()
    adjacency = face_adjacency(mesh.face)
    assert adjacency.size(1) == 12          # every face of a tetrahedron touches 3 others
    out = MeshHierarchy(method='faces', branching=(2, ))(mesh)
    assert out.node_types[:2] == ['face', 'community1']
    assert Hierarchy.from_hetero(out).num_leaves == 4
    with pytest.raises(ValueError, match="'method'"):
        MeshHierarchy(method='voxels')
