import pytest
import torch

from hsa_geo.datasets import planted_node_dataset


def _purity(data, level=1):
    r"""The share of nodes whose class is their block's most common class."""
    blocks = data.planted[:, level]
    counts = torch.zeros(int(blocks.max()) + 1, int(data.y.max()) + 1)
    counts.index_put_((blocks, data.y), torch.ones(data.num_nodes), accumulate=True)
    return float(counts.max(1).values.sum() / data.num_nodes)


def test_classes_follow_the_blocks_of_the_label_level():
    data = planted_node_dataset(3000, 8, (4, 4), (0.5, 0.2), seed=3)
    assert _purity(data) == 1.0


def test_the_control_draws_every_node_its_own_class():
    data = planted_node_dataset(3000, 8, (4, 4), (0.5, 0.2), seed=3, community_labels=False)
    # 16 blocks of ~190 nodes, 8 classes: the commonest class of a block holds ~1/8 + noise
    assert _purity(data) < 0.25
    assert torch.bincount(data.y, minlength=8).min() > 250
    same = planted_node_dataset(3000, 8, (4, 4), (0.5, 0.2), seed=3)
    # the graph is the same graph; only the classes (and so the features) differ
    assert torch.equal(data.edge_index, same.edge_index)
    assert torch.equal(data.planted, same.planted)


def test_the_control_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="'community_labels' must be a bool, got str"):
        planted_node_dataset(500, 4, (2, 2), (0.5, 0.2), community_labels='no')
