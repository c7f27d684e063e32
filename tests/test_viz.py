import pytest
import torch
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.testing import random_forest
from hsa_geo.transforms import TextHierarchy, VoxelHierarchy
from hsa_geo.viz import draw_clusters, draw_tree

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
