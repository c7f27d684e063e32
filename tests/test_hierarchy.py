import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hsa_geo import Hierarchy
from hsa_geo.testing import flat_tree, random_forest, random_ragged_tree, regular_tree


def test_repr_and_properties():
    h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4)
    assert repr(h) == ('Hierarchy(num_nodes=7, num_leaves=4, num_roots=1, depth=2, '
                       'max_branching=2)')
    assert h.num_pairs == 2 + 2 + 2
    assert h.leaf_perm is None  # leaves already in engine order


def test_equality_and_to():
    parent, n = random_forest(1, 2)
    a = Hierarchy.from_parent(parent, n)
    b = Hierarchy.from_parent(parent.clone(), n)
    assert a == b
    assert a != Hierarchy.from_parent(*flat_tree(n))
    moved = a.to('cpu')
    assert moved == a and moved.device == torch.device('cpu')
    assert all(lvl.rep.device == torch.device('cpu') for lvl in moved.levels)


@given(seed=st.integers(0, 10**6), num_roots=st.integers(1, 4))
def test_sibling_index_lists_every_ordered_sibling_pair_once(seed, num_roots):
    parent, n = random_forest(seed, num_roots, 4, 5)
    h = Hierarchy.from_parent(parent, n)
    pairs = h.sibling_index
    assert pairs.shape == (2, h.num_pairs)
    families = {}
    for node, p in enumerate(parent.tolist()):
        if p >= 0:
            families.setdefault(p, []).append(node)
    expected = {(a, b) for fam in families.values() for a in fam for b in fam if a != b}
    got = [tuple(x) for x in pairs.t().tolist()]
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


@given(seed=st.integers(0, 10**6))
def test_levels_cover_every_node_once(seed):
    parent, n = random_forest(seed, 3, 4, 5)
    h = Hierarchy.from_parent(parent, n)
    # real nodes appear once each as a non-pass-through position; every leaf on level 0
    assert h.levels[0].num_nodes == n
    assert sorted(h.levels[0].rep.tolist()) == list(range(n))
    for lower, upper in zip(h.levels[:-1], h.levels[1:]):
        families = sum(b.num_families for b in lower.buckets)
        assert families == upper.num_nodes
        assert sum(b.child_end - b.child_start for b in lower.buckets) == lower.num_children
    roots = sum(lvl.num_roots for lvl in h.levels)
    assert roots == h.num_roots == int((parent < 0).sum())
    top = h.levels[-1]
    assert top.num_children == 0


def test_leaf_counts_and_grading():
    # leaf 0 hangs directly under the root of height 2: one pass-through node
    parent = torch.tensor([5, 4, 4, 4, 5, -1])
    h = Hierarchy.from_parent(parent, 4)
    assert h.depth == 2
    assert [lvl.num_nodes for lvl in h.levels] == [4, 2, 1]
    assert sorted(h.levels[1].leaf_count.tolist()) == [1, 3]
    assert h.levels[2].leaf_count.tolist() == [4]


def test_regular_and_ragged_generators():
    h = Hierarchy.from_parent(*regular_tree(4096, (16, 16, 16)))
    assert h.depth == 3 and h.max_branching == 16 and h.leaf_perm is None
    assert all(len(lvl.buckets) <= 1 for lvl in h.levels)
    h = Hierarchy.from_parent(*random_ragged_tree(5000, 2, 32, seed=1))
    assert 2 <= h.max_branching <= 32


def test_single_leaf_and_many_roots():
    h = Hierarchy.from_parent(torch.tensor([-1]), 1)
    assert h.depth == 0 and h.num_roots == 1 and h.num_pairs == 0
    h = Hierarchy.from_parent(torch.full((5, ), -1), 5)
    assert h.num_roots == 5 and len(h.levels) == 1


@pytest.mark.parametrize('parent,num_leaves,exc,match', [
    ([1.0, -1.0], 1, TypeError, "'parent' must be an integer tensor"),
    ([[1, -1]], 1, ValueError, r"'parent' must be one-dimensional"),
    ([2, -1], 1, ValueError, r"parent\[0\] = 2, expected -1 \(root\) or a node index in \[0, 1\]"),
    ([1, -2], 1, ValueError, r"parent\[1\] = -2"),
    ([1, 0, -1], 1, ValueError, "node 0 is a leaf"),
    ([2, 2, -1, -1], 2, ValueError, "internal node 3 has no children"),
    ([1, 2, 1], 1, ValueError, "'parent' contains a cycle"),
    ([0], 1, ValueError, "node 0 is a leaf"),
    ([2, 2, 3, 2], 2, ValueError, "'parent' contains a cycle"),
    ([1, -1], 3, ValueError, r"'num_leaves' \(3\) is larger than the number of nodes"),
    ([1, -1], 0, ValueError, "'num_leaves' must be at least 1"),
    ([1, -1], 1.5, TypeError, "'num_leaves' must be an int"),
])
def test_validation_errors(parent, num_leaves, exc, match):
    with pytest.raises(exc, match=match):
        Hierarchy.from_parent(torch.tensor(parent), num_leaves)


def test_self_loop_in_internal_node_is_a_cycle():
    with pytest.raises(ValueError, match='cycle'):
        Hierarchy.from_parent(torch.tensor([1, 1]), 1)


def test_accepts_lists_and_int_dtypes():
    h = Hierarchy.from_parent([2, 2, -1], 2)
    assert h == Hierarchy.from_parent(torch.tensor([2, 2, -1], dtype=torch.int32), 2)


def test_hierarchy_owns_its_parent_vector():
    # regression: writing into the caller's tensor changed h.parent (used by
    # ==, the reference and hsa_weights) but not the compiled layout
    import numpy as np

    from hsa_geo import hsa
    from hsa_geo.reference import hsa_dense
    parent = torch.tensor([4, 4, 5, 5, 6, 6, -1])
    h = Hierarchy.from_parent(parent, 4)
    same = Hierarchy.from_parent(parent.clone(), 4)
    parent[0] = 5
    assert h == same and h.parent[0] == 4
    q = torch.randn(4, 2, 3, dtype=torch.float64)
    assert torch.allclose(hsa(q, q, q, h), hsa_dense(q, q, q, h))
    array = np.array([2, 2, -1])
    from_array = Hierarchy.from_parent(array, 2)
    array[0] = -1
    assert from_array.parent[0] == 2


def test_to_moves_devices_only():
    h = Hierarchy.from_parent(torch.tensor([2, 2, -1]), 2)
    assert h.to('cpu') == h and h.to(torch.device('cpu')).parent.dtype == torch.long
    with pytest.raises(TypeError, match="'device' must be a device, got the dtype"):
        h.to(torch.float64)
