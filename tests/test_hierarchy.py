import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hsa_geo import Hierarchy, hsa
from hsa_geo.reference import hsa_dense
from hsa_geo.testing import flat_tree, random_forest, random_ragged_tree, regular_tree
from hsa_geo.weights import hsa_weights


def test_repr_and_properties():
    h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4)
    assert repr(h) == ('Hierarchy(num_nodes=7, num_leaves=4, num_roots=1, depth=2, '
                       'max_branching=2)')
    assert h.num_pairs == 2 + 2 + 2 and h.num_levels == 2


def test_equality_and_to():
    parent, n = random_forest(1, 2)
    a = Hierarchy.from_parent(parent, n)
    b = Hierarchy.from_parent(parent.clone(), n)
    assert a == b
    assert a != Hierarchy.from_parent(*flat_tree(n))
    moved = a.to('cpu')
    assert moved == a and moved.device == torch.device('cpu')
    assert all(c.child.device == torch.device('cpu') for c in moved.layout.classes())


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
def test_layout_holds_every_compiled_node_once(seed):
    parent, n = random_forest(seed, 3, 4, 5)
    h = Hierarchy.from_parent(parent, n)
    layout = h.layout
    children = torch.bincount(parent[parent >= 0], minlength=parent.numel())
    unary = children == 1
    # every node with siblings heads exactly one child slot of one class
    heading = [int(x) for c in layout.classes() for x in c.child_node[c.weight > 0]]
    with_siblings = [i for i, p in enumerate(parent.tolist()) if p >= 0 and not unary[p]]
    assert sorted(heading) == with_siblings
    # branching nodes and the lifted leaves own the node-buffer rows
    internal = int((~unary[n:]).sum())
    lifted = layout.num_lifted
    assert layout.num_rows == lifted + internal + 1
    parents = [r for c in layout.classes()
               for r in range(c.parent_start, c.parent_start + c.num_families)]
    assert sorted(parents) == list(range(lifted, lifted + internal))
    first = layout.levels[0] if layout.levels else []
    assert all(c.leaves for c in first) and not any(
        c.leaves for level in layout.levels[1:] for c in level)
    leaves_in_classes = sorted(int(x) for c in first for x in c.child[c.weight > 0])
    assert sorted(leaves_in_classes + layout.lifted.tolist() +
                  layout.root_leaves.tolist()) == list(range(n))
    for c in layout.classes():  # a family of width B holds at most B children
        assert int(c.sizes.max()) <= c.width and int(c.sizes.min()) >= 2


def test_unary_chains_collapse_and_heights_mix():
    # leaf 0 hangs directly under the root of height 2: no pass-through node
    h = Hierarchy.from_parent(torch.tensor([5, 4, 4, 4, 5, -1]), 4)
    assert h.depth == 2 and h.num_levels == 2 and h.layout.num_rows == 1 + 2 + 1
    assert h.layout.lifted.tolist() == [0]           # its row in the node buffer: 0
    top = h.layout.levels[1][0]
    assert top.child.tolist() == [[0, 1]]           # a leaf beside an internal node
    assert top.weight.tolist() == [[0.25, 0.75]]
    # a chain is one node: the leaf is the root's child through two unary nodes
    h = Hierarchy.from_parent(torch.tensor([3, 4, 4, 5, 5, -1]), 3)
    assert h.num_levels == 2 and h.layout.num_rows == 1 + 2 + 1
    assert h.layout.levels[1][0].child_node.tolist() == [[3, 4]]
    for chain in ([1, 2, 3, -1], [1, -1]):
        h = Hierarchy.from_parent(torch.tensor(chain), 1)
        assert h.num_levels == 0 and h.layout.root_leaves.tolist() == [0]


def test_regular_and_ragged_generators():
    h = Hierarchy.from_parent(*regular_tree(4096, (16, 16, 16)))
    assert h.depth == 3 and h.max_branching == 16 and h.num_levels == 3
    assert all(len(level) == 1 for level in h.layout.levels)
    assert h.layout.levels[0][0].child_start == 0     # the leaves' block is a view
    h = Hierarchy.from_parent(*random_ragged_tree(5000, 2, 32, seed=1))
    assert 2 <= h.max_branching <= 32


def test_single_leaf_and_many_roots():
    h = Hierarchy.from_parent(torch.tensor([-1]), 1)
    assert h.depth == 0 and h.num_roots == 1 and h.num_pairs == 0
    h = Hierarchy.from_parent(torch.full((5, ), -1), 5)
    assert h.num_roots == 5 and h.num_levels == 0


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


def _two_trees():
    return (Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4),
            torch.tensor([4, 5, 4, 5, 6, 6, -1]))


@pytest.mark.parametrize('edit', ['copy_', 'index', 'view', 'roots', 'leaf_tree'])
def test_a_compiled_hierarchy_refuses_to_run_after_an_in_place_edit(edit):
    h, other = _two_trees()
    q = torch.randn(4, 1, 3)
    if edit == 'copy_':
        h.parent.copy_(other)
    elif edit == 'index':
        h.parent[1] = 5
    elif edit == 'view':
        h.parent.view(1, -1)[0, 2] = 4
    elif edit == 'roots':
        h.roots.zero_()
    else:
        h.leaf_tree.add_(0)
    for call in (lambda: hsa(q, q, q, h), lambda: h == Hierarchy.from_parent(other, 4),
                 lambda: h.sibling_index, lambda: Hierarchy.of(h.parent),
                 lambda: hsa_weights(q, q, h)):
        with pytest.raises(ValueError, match='modified in place after the hierarchy was '
                                             'compiled'):
            call()


@pytest.mark.parametrize('name', ['parent', 'num_leaves', 'layout', 'roots', 'leaf_tree',
                                  'depth', 'node_slices', 'leaf_types'])
def test_a_compiled_hierarchy_refuses_new_fields(name):
    h, other = _two_trees()
    with pytest.raises(AttributeError, match=f'Hierarchy.{name} cannot be set'):
        setattr(h, name, other)
    q = torch.randn(4, 1, 3, dtype=torch.float64)
    assert torch.allclose(hsa(q, q, q, h), hsa_dense(q, q, q, h), atol=1e-12)


def test_node_types_are_read_only_and_given_by_with_node_types():
    h, _ = _two_trees()
    typed = h.with_node_types({'a': (0, 1), 'b': (1, 4), 'cluster': (4, 7)})
    assert typed.leaf_types == ('a', 'b') and typed.layout is h.layout
    assert typed == h and typed.node_slices['b'] == (1, 4)
    with pytest.raises(TypeError):
        typed.node_slices['c'] = (0, 1)
    with pytest.raises(ValueError, match="'node_slices' covers nodes 0..3"):
        h.with_node_types({'a': (0, 4)})
    with pytest.raises(ValueError, match='mixes leaves and internal nodes'):
        h.with_node_types({'a': (0, 5), 'c': (5, 7)})
    with pytest.raises(ValueError, match='consecutive'):
        h.with_node_types({'a': (0, 2), 'b': (3, 7)})
    # pickling (loader workers) keeps types and the check
    import pickle
    again = pickle.loads(pickle.dumps(typed))
    assert again.leaf_types == ('a', 'b') and dict(again.node_slices) == dict(typed.node_slices)
    again.parent.zero_()
    with pytest.raises(ValueError, match='modified in place'):
        again.check_intact()


def test_hierarchy_and_a_layer_on_the_meta_device():
    from hsa_geo.nn import HSAConv
    h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4).to('meta')
    assert h.device.type == 'meta' and h.num_leaves == 4
    conv = HSAConv(8, 4, heads=2).to('meta')
    out = conv(torch.randn(4, 8, device='meta'), h)
    assert out.shape == (4, 8) and out.device.type == 'meta'
