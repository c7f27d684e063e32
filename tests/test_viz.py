import pytest
import torch
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.testing import random_forest
from hsa_geo.transforms import TextHierarchy, VoxelHierarchy
from hsa_geo.viz import draw_clusters, draw_tree, leaf_clusters

pytest.importorskip('matplotlib')


def test_draw_tree(tmp_path):
    h = Hierarchy.from_hetero(TextHierarchy()(Data(text='One sentence. Two here!')))
    draw_tree(h, str(tmp_path / 'tree.png'))
    assert (tmp_path / 'tree.png').stat().st_size > 1000
    draw_tree(Hierarchy.from_parent(*random_forest(1, 2)), str(tmp_path / 'forest.png'))
    with pytest.raises(ValueError, match='max_nodes'):
        draw_tree(Hierarchy.from_parent(*random_forest(1, 2)), max_nodes=2)


def test_draw_clusters(tmp_path):
    pos = torch.rand(200, 3)
    h = Hierarchy.from_hetero(VoxelHierarchy(depth=2)(Data(pos=pos)))
    draw_clusters(pos, h, depth=1, path=str(tmp_path / 'clusters.png'))
    assert (tmp_path / 'clusters.png').stat().st_size > 1000
    with pytest.raises(ValueError, match="'pos' must have shape"):
        draw_clusters(pos[:10], h)


def test_leaf_clusters():
    # leaves 0-4; 0, 1 under node 5; 2, 3 under 6; 5, 6 and leaf 4 under the root 7
    h = Hierarchy.from_parent(torch.tensor([5, 5, 6, 6, 7, 7, 7, -1]), 5)
    label, nodes = leaf_clusters(h, depth=1)
    assert sorted(nodes.tolist()) == [4, 5, 6]
    assert [int(nodes[i]) for i in label] == [5, 5, 6, 6, 4]
    label, nodes = leaf_clusters(h, depth=0)
    assert label.tolist() == [0] * 5 and nodes.tolist() == [7]
