import pytest
import torch
from torch_geometric.data import Data

from hsa_geo.datasets import (
    MESHES,
    SYNTHETIC_SHAPES,
    digits_point_clouds,
    read_bunny,
    read_mesh,
    synthetic_shapes,
)
from hsa_geo.transforms import MeshHierarchy, VoxelHierarchy


@pytest.fixture(scope='module')
def shapes():
    return synthetic_shapes(6, seed=3, num_points=256)


@pytest.fixture(scope='module')
def bright_digits():
    return digits_point_clouds(threshold=8)


@pytest.fixture(scope='module')
def unions():
    return synthetic_shapes(3, seed=1, num_points=300, union=True)


@pytest.mark.parametrize('name,num_vertices,num_faces', [('airplane', 1335, 2452),
                                                         ('ant', 486, 912),
                                                         ('nut', 523, 1046)])
def test_read_mesh(name, num_vertices, num_faces):
    mesh = read_mesh(name)
    assert mesh.pos.shape == (num_vertices, 3) and mesh.pos.dtype == torch.float
    assert mesh.face.shape == (3, num_faces) and mesh.face.dtype == torch.long
    assert torch.isfinite(mesh.pos).all()
    assert mesh.face.min() == 0 and mesh.face.max() == num_vertices - 1


def test_read_mesh_unknown_name():
    with pytest.raises(ValueError, match="'name'.*airplane.*ant.*nut.*'bunny'"):
        read_mesh('bunny')
    assert MESHES == ('airplane', 'ant', 'nut')


def test_read_bunny():
    bunny = read_bunny()
    assert bunny.pos.shape == (2503, 3) and bunny.pos.dtype == torch.float
    assert torch.isfinite(bunny.pos).all()
    extent = bunny.pos.max(0).values - bunny.pos.min(0).values
    assert ((0.1 < extent) & (extent < 0.2)).all()
    assert torch.unique(bunny.pos, dim=0).size(0) == 2503


def test_digits(bright_digits):
    digits = digits_point_clouds()
    assert len(digits) == 1797
    labels = torch.cat([d.y for d in digits])
    assert labels.min() == 0 and labels.max() == 9 and labels.bincount().min() >= 170
    sizes = torch.tensor([d.num_nodes for d in digits])
    assert sizes.min() == 16 and sizes.max() == 42
    assert sizes.float().mean() == pytest.approx(32.69, abs=0.01)
    for d in digits[:50]:
        assert d.pos.shape == (d.num_nodes, 2) and d.x.shape == (d.num_nodes, 1)
        assert ((d.pos >= 0) & (d.pos <= 7)).all() and ((d.x > 0) & (d.x <= 1)).all()
    # threshold: fewer and brighter points, a subset of the default ones
    assert all(b.num_nodes < d.num_nodes for b, d in zip(bright_digits[:50], digits[:50]))
    assert all((b.x > 0.5).all() for b in bright_digits[:50])
    with pytest.raises(ValueError, match="'threshold'"):
        digits_point_clouds(threshold=16)


def test_digit_orientation(bright_digits):
    # a '1' is a vertical stroke: its points spread more in y than in x
    ones = [d for d in bright_digits if d.y.item() == 1][:20]
    spread = torch.stack([d.pos.std(0) for d in ones]).mean(0)
    assert spread[1] > 1.5 * spread[0]


def test_synthetic_deterministic_and_prefix_stable(shapes):
    again = synthetic_shapes(6, seed=3, num_points=256)
    for a, b in zip(shapes, again):
        assert torch.equal(a.pos, b.pos) and torch.equal(a.face, b.face)
        assert torch.equal(a.points, b.points) and torch.equal(a.y, b.y)
    fewer = synthetic_shapes(2, seed=3, num_points=256)
    assert all(torch.equal(a.points, b.points) for a, b in zip(fewer, shapes))
    other = synthetic_shapes(1, seed=4, num_points=256)
    assert not torch.equal(other[0].points, shapes[0].points)


def test_synthetic_shapes_fields(shapes):
    assert len(shapes) == 6 * len(SYNTHETIC_SHAPES)
    labels = torch.cat([d.y for d in shapes])
    assert labels.bincount().tolist() == [6] * len(SYNTHETIC_SHAPES)
    for d in shapes:
        assert d.points.shape == (256, 3) and d.pos.size(1) == 3 and d.face.size(0) == 3
        assert torch.isfinite(d.pos).all() and torch.isfinite(d.points).all()
        assert d.pos.norm(dim=1).max() <= 1 + 1e-5          # inside the unit ball
        assert d.face.max() < d.pos.size(0)
        # conforming refinement: every edge is shared by exactly two faces
        edges = torch.cat([d.face[[0, 1]], d.face[[1, 2]], d.face[[2, 0]]], 1).sort(0).values
        assert (torch.unique(edges, dim=1, return_counts=True)[1] == 2).all()


def test_synthetic_face_counts_do_not_tell_the_class(shapes):
    counts = torch.tensor([d.face.size(1) for d in shapes]).view(-1, len(SYNTHETIC_SHAPES))
    assert counts.min() >= 400 and counts.max() <= 2000
    # every class spans a wide range of face counts
    assert (counts.max(0).values - counts.min(0).values > 400).all()


def test_synthetic_face_count_range():
    data = synthetic_shapes(1, num_points=8, num_faces=(500, 520))
    assert all(500 <= d.face.size(1) <= 520 for d in data)
    with pytest.raises(ValueError, match="'num_faces'"):
        synthetic_shapes(1, num_faces=(100, 2000))


def test_synthetic_rotations_vary(shapes):
    # the principal axes of the boxes point in different directions
    boxes = [d for d in shapes if SYNTHETIC_SHAPES[d.y.item()] == 'box']
    axes = []
    for d in boxes:
        centred = d.points - d.points.mean(0)
        axes.append(torch.linalg.eigh(centred.t() @ centred).eigenvectors[:, -1])
    cosine = (torch.stack(axes) @ torch.stack(axes).t()).abs()
    assert cosine[~torch.eye(len(axes), dtype=torch.bool)].min() < 0.9


def test_union_labels(unions):
    assert len(unions) == 3 * len(SYNTHETIC_SHAPES)
    for i, d in enumerate(unions):
        assert d.y.item() == i % len(SYNTHETIC_SHAPES)
        assert d.face_part.shape == (d.face.size(1),) and d.point_part.shape == (300,)
        assert d.face_part.min() >= 0 and d.face_part.max() < len(SYNTHETIC_SHAPES)
        assert set(d.point_part.tolist()) <= set(d.face_part.tolist())
        assert d.y.item() in d.face_part.tolist()
        assert 400 <= d.face.size(1) <= 2000
    assert any(len(set(d.face_part.tolist())) > 1 for d in unions)


def test_union_largest_part_is_the_label(unions):
    for d in unions:
        a, b, c = d.pos[d.face[0]], d.pos[d.face[1]], d.pos[d.face[2]]
        area = torch.linalg.cross(b - a, c - a).norm(dim=1) / 2
        per_class = torch.zeros(len(SYNTHETIC_SHAPES)).index_add_(0, d.face_part, area)
        # each other part has at most 0.7 times the first one's area, so another
        # class (at most two parts) has at most 1.4 times the label's area
        assert per_class[d.y] >= per_class.max() / 1.4 - 1e-4
        assert per_class.argmax() == d.y.item() or len(set(d.face_part.tolist())) == 2


def test_hierarchies(shapes, unions):
    for d in shapes[:2] + unions[:2]:
        mesh = MeshHierarchy(depth=3)(d)
        assert mesh['face'].num_nodes == d.face.size(1)
        cloud = VoxelHierarchy(depth=3)(Data(pos=d.points))
        assert cloud['point'].num_nodes == d.points.size(0)
    assert torch.equal(MeshHierarchy(depth=3)(unions[0])['face'].face_part,
                       unions[0].face_part)
