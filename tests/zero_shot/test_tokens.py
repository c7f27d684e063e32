import pytest
import torch

from hsa_geo.zero_shot import sequence_parent, token_forest


def children(parent):
    out = {}
    for child, p in enumerate(parent.tolist()):
        if p >= 0:
            out.setdefault(p, []).append(child)
    return out


def test_flat_sequence():
    assert sequence_parent(4, 'flat').tolist() == [4, 4, 4, 4, -1]
    assert sequence_parent(1, (2, 2)).tolist() == [1, -1]


def test_windows_with_special_ends():
    parent = sequence_parent(9, (2, 4), special_ends=True)
    family = children(parent)
    root = parent.numel() - 1
    assert parent[root] == -1
    # tokens 1..7 in windows of 2: (1 2) (3 4) (5 6) (7); those in windows of 4
    windows = [sorted(family[p]) for p in sorted(set(parent[1:8].tolist()))]
    assert windows == [[1, 2], [3, 4], [5, 6], [7]]
    assert 0 in family[root] and 8 in family[root]
    assert len(family[root]) == 3  # [CLS], the one window of windows, [SEP]


def test_windows_without_special_ends_match_window_parent():
    from hsa_geo.transforms import window_parent
    assert torch.equal(sequence_parent(11, (2, 4)), window_parent(11, (2, 4))[0])


def test_token_forest_orders_leaves_like_x_mask():
    mask = torch.tensor([[True, True, True, False], [False, False, False, False],
                         [True, True, False, False]])
    h = token_forest(mask, 'flat')
    assert h.num_leaves == 5 and h.num_roots == 2
    leaf_root = h.parent[:5]
    assert leaf_root[:3].unique().numel() == 1 and leaf_root[3:].unique().numel() == 1
    assert leaf_root[0] != leaf_root[3]


def test_errors():
    with pytest.raises(ValueError, match="'mask'"):
        token_forest(torch.ones(3, dtype=torch.bool), 'flat')
    with pytest.raises(ValueError, match="'mask' has no valid"):
        token_forest(torch.zeros(2, 3, dtype=torch.bool), 'flat')
    with pytest.raises(ValueError, match="'length'"):
        sequence_parent(0, 'flat')


def _leaves_below(parent, node):
    out, stack = [], [node]
    family = children(parent)
    while stack:
        x = stack.pop()
        if x in family:
            stack.extend(family[x])
        else:
            out.append(x)
    return sorted(out)


@pytest.mark.parametrize('branching', [(2, 4), (2, 2, 2), 'flat'])
def test_segment_forest_keeps_windows_inside_segments(branching):
    from hsa_geo import Hierarchy
    from hsa_geo.zero_shot.tokens import segment_parent
    # [CLS] a a a a a [SEP] b b b [SEP]
    special = torch.tensor([1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1], dtype=torch.bool)
    parent = segment_parent(special, branching)
    Hierarchy.from_parent(parent, 11)  # a valid tree
    root = parent.numel() - 1
    family = children(parent)
    # the special tokens and one subtree per segment hang under the root
    assert sorted(_leaves_below(parent, c) for c in family[root]) == \
        [[0], [1, 2, 3, 4, 5], [6], [7, 8, 9], [10]]
    # no internal node below the root mixes the two segments
    for node in range(11, root):
        leaves = set(_leaves_below(parent, node))
        assert leaves <= {1, 2, 3, 4, 5} or leaves <= {7, 8, 9}


def test_segment_forest_over_a_padded_batch():
    from hsa_geo.zero_shot.tokens import SegmentForest, segment_parent
    ids = torch.tensor([[101, 5, 6, 7, 102, 9, 10, 102, 0, 0],
                        [101, 5, 102, 7, 8, 102, 0, 0, 0, 0]])
    mask = ids != 0
    forest = SegmentForest((2, 4), sep_token_id=102)
    h = forest(ids, mask)
    assert h.num_leaves == int(mask.sum()) and h.num_roots == 2
    assert forest(ids, mask) is h  # cached per batch
    one = segment_parent(torch.tensor([1, 0, 0, 0, 1, 0, 0, 1], dtype=torch.bool), (2, 4))
    assert h.num_nodes == one.numel() + segment_parent(
        torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool), (2, 4)).numel()
    with pytest.raises(ValueError, match='input_ids'):
        forest(None, mask)
