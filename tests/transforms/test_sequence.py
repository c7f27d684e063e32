import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy, HSAConv
from hsa_geo.transforms import SequenceHierarchy, grid_positions, window_parent


@pytest.mark.parametrize('length,branching,sizes', [
    (64, (2, 4, 8), [64, 32, 8, 1, 1]),
    (10, (2, 4), [10, 5, 2, 1]),       # leftovers: smaller last windows, then one root
    (3, (4, ), [3, 1, 1]),
    (1, (2, ), [1, 1, 1]),             # every sequence gets every level
])
def test_window_parent(length, branching, sizes):
    parent, got = window_parent(length, branching)
    assert got == sizes and parent.numel() == sum(sizes)
    h = Hierarchy.from_parent(parent, length)
    assert h.num_roots == 1
    if length == 10:
        assert parent[:10].tolist() == [10, 10, 11, 11, 12, 12, 13, 13, 14, 14]
        assert parent[10:15].tolist() == [15, 15, 15, 15, 16]
        assert parent[15:].tolist() == [17, 17, -1]


def test_transform_keeps_attributes_and_batches():
    transform = SequenceHierarchy((2, 4), pos_dim=8)
    data = [transform(Data(x=torch.randn(n, 5), y=torch.tensor([n]))) for n in (10, 7, 16)]
    first = data[0]
    assert first['token'].x.shape == (10, 5) and first.y.tolist() == [10]
    assert first.node_types == ['token', 'window1', 'window2', 'root']
    assert first['token'].hsa_pos.shape == (10, 8)
    # positions are the index inside the window
    expected = grid_positions(torch.tensor([0, 1] * 5), 8)
    assert torch.allclose(first['token'].hsa_pos, expected)
    batch = next(iter(DataLoader(data, batch_size=3)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 3 and h.num_leaves == 33
    conv = HSAConv(5, 4, heads=2, pos_channels=8)
    pos = {t: batch[t].hsa_pos for t in batch.node_types}
    out = conv(batch['token'].x, h, pos=pos)
    alone = [conv(d['token'].x, Hierarchy.from_hetero(d),
                  pos={t: d[t].hsa_pos for t in d.node_types}) for d in data]
    assert torch.allclose(out, torch.cat(alone), atol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match='at least 2'):
        SequenceHierarchy((2, 1))
    with pytest.raises(ValueError, match='length zero'):
        SequenceHierarchy((2, ))(Data(x=torch.randn(0, 3)))
    with pytest.raises(ValueError, match="'pos_dim' must be a positive even number"):
        SequenceHierarchy((2, ), pos_dim=3)
