import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy, HSAConv
from hsa_geo.transforms import VoxelHierarchy, auto_depth


@pytest.mark.parametrize('dim', [2, 3])
def test_voxel_pyramid(dim):
    torch.manual_seed(dim)
    data = Data(pos=torch.rand(300, dim), x=torch.randn(300, 4), y=torch.tensor([2]))
    out = VoxelHierarchy(depth=3)(data)
    assert out.node_types == ['point', 'voxel1', 'voxel2', 'voxel3', 'root']
    assert out['point'].x.shape == (300, 4) and out.y.tolist() == [2]
    for child, parent in (('voxel1', 'voxel2'), ('voxel2', 'voxel3'), ('voxel3', 'root')):
        families = torch.bincount(out[child, 'in', parent].edge_index[1])
        assert families.max() <= 2 ** dim                       # bounded branching
        assert out[child].hsa_pos.abs().max() <= 1 + 1e-6
    # every point lies in its finest voxel: same cell at resolution 2^3
    cell = ((data.pos - data.pos.min(0).values) /
            (data.pos.max(0).values - data.pos.min(0).values) * 8).long().clamp(max=7)
    voxel = out['point', 'in', 'voxel1'].edge_index[1]
    for v in torch.unique(voxel)[:10]:
        assert (cell[voxel == v] == cell[voxel == v][0]).all()
    h = Hierarchy.from_hetero(out)
    assert h.num_leaves == 300 and h.num_roots == 1


def test_batching_and_conv():
    clouds = [VoxelHierarchy(depth=2)(Data(pos=torch.rand(n, 3), x=torch.randn(n, 2)))
              for n in (20, 50)]
    batch = next(iter(DataLoader(clouds, batch_size=2)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 2
    conv = HSAConv(2, 4, pos_channels=3)
    out = conv(batch['point'].x, h, pos={t: batch[t].hsa_pos for t in batch.node_types})
    assert out.shape == (70, 4)


def test_bad_input_and_auto_depth():
    with pytest.raises(ValueError, match="'data.pos' is required"):
        VoxelHierarchy()(Data(x=torch.randn(5, 2)))
    with pytest.raises(ValueError, match=r"'data.pos' must have shape"):
        VoxelHierarchy()(Data(pos=torch.randn(5, 4)))
    with pytest.raises(ValueError, match="'depth'"):
        VoxelHierarchy(depth=0)
    assert auto_depth(1_000_000, 3) == 6 and auto_depth(10, 2) == 1


def test_real_digits_point_sets():
    datasets = pytest.importorskip('sklearn.datasets')
    images = datasets.load_digits().images[:10]
    clouds = []
    for image in images:
        image = torch.as_tensor(image)
        ys, xs = (image > 4).nonzero(as_tuple=True)
        pos = torch.stack([xs, 7 - ys], dim=1).float()
        clouds.append(VoxelHierarchy(depth=2)(Data(pos=pos, x=image[ys, xs].view(-1, 1))))
    batch = next(iter(DataLoader(clouds, batch_size=10)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 10
    # an 8x8 image in a depth-2 quadtree: at most 4 children per voxel, 4 pixels per finest voxel
    for child, parent in (('point', 'voxel1'), ('voxel1', 'voxel2'), ('voxel2', 'root')):
        assert torch.bincount(batch[child, 'in', parent].edge_index[1]).max() <= 4


def test_fps_hierarchy():
    from hsa_geo.transforms import FPSHierarchy, farthest_point_sampling
    pos = torch.tensor([[0., 0], [0.1, 0], [5, 5], [5.1, 5], [10, 0], [10, 0.1]])
    chosen = farthest_point_sampling(pos, 3, seed=0)
    assert len(set(chosen.tolist())) == 3
    # the three far-apart pairs end up in three different clusters
    out = FPSHierarchy(ratios=(0.5, ))(Data(pos=pos, x=torch.randn(6, 2)))
    label = out['point', 'in', 'cluster1'].edge_index[1]
    assert label[0] == label[1] and label[2] == label[3] and label[4] == label[5]
    assert len(set(label.tolist())) == 3
    assert out['point'].hsa_pos.abs().max() <= 1 + 1e-6
    clouds = [FPSHierarchy()(Data(pos=torch.rand(n, 3))) for n in (40, 70)]
    h = Hierarchy.from_hetero(next(iter(DataLoader(clouds, batch_size=2))))
    assert h.num_roots == 2 and h.num_leaves == 110
    with pytest.raises(ValueError, match='ratio'):
        FPSHierarchy(ratios=(1.5, ))
    with pytest.raises(ValueError, match="'data.pos'"):
        FPSHierarchy()(Data(x=torch.randn(3, 1)))
