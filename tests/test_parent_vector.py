r"""A parent vector's checks and compilation (:mod:`hsa_geo.parent_vector`):
the compiled pass (numba) and the PyTorch code agree on every vector, valid
or not: the compiled pass refuses exactly the vectors the PyTorch checks
raise on (which then name the fault), and on valid ones both give the same
depth, widest family, roots, tree of every leaf and families."""
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip('numba')

from hsa_geo import Hierarchy  # noqa: E402
from hsa_geo.engine import numba_kernels  # noqa: E402
from hsa_geo.engine.families import Families, families_of  # noqa: E402
from hsa_geo.engine.forest import compile_parent  # noqa: E402
from hsa_geo.parent_vector import check_parent, compile_forest  # noqa: E402
from hsa_geo.testing import degenerate_forests, random_forest, random_ragged_tree  # noqa: E402


def _torch_path(monkeypatch, parent, num_leaves):
    with monkeypatch.context() as m:
        m.setattr(numba_kernels, 'available', lambda: False)
        return compile_forest(parent, num_leaves)


def _same(compiled, expected):
    assert (compiled.depth, compiled.max_branching) == (expected.depth, expected.max_branching)
    assert torch.equal(compiled.roots, expected.roots)
    assert torch.equal(compiled.leaf_tree, expected.leaf_tree)
    assert compiled.forest._families is not None  # built in the same pass
    families = families_of(expected.forest.layout)
    for f in dataclasses.fields(Families):
        if f.name != 'cache':
            x, y = getattr(compiled.forest.families, f.name), getattr(families, f.name)
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, f.name


CASES = [random_forest(s, 4, 4, 6) for s in range(12)] + \
    [(p, n) for _, p, n in degenerate_forests()] + [random_ragged_tree(500, 2, 9, seed=3)]


@pytest.mark.parametrize('parent,num_leaves', CASES)
def test_compiled_pass_equals_the_pytorch_code(monkeypatch, parent, num_leaves):
    parent, num_leaves = check_parent(parent, num_leaves)
    _same(compile_parent(parent, num_leaves), _torch_path(monkeypatch, parent, num_leaves))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), num_nodes=st.integers(1, 12))
def test_compiled_pass_refuses_exactly_the_faulty_vectors(monkeypatch, data, num_nodes):
    r"""Arbitrary integer vectors (out of range, leaves with children,
    childless internal nodes, cycles, and valid forests)."""
    num_leaves = data.draw(st.integers(1, num_nodes))
    values = data.draw(st.lists(st.integers(-2, num_nodes), min_size=num_nodes,
                                max_size=num_nodes))
    parent, num_leaves = check_parent(torch.tensor(values), num_leaves)
    compiled = compile_parent(parent, num_leaves)
    try:
        expected = _torch_path(monkeypatch, parent, num_leaves)
    except ValueError:
        assert compiled is None
        with pytest.raises(ValueError):   # and the public path names it
            Hierarchy.from_parent(parent, num_leaves)
        return
    _same(compiled, expected)


def test_the_vector_is_copied_and_its_faults_named():
    parent = torch.tensor([2, 2, -1])
    h = Hierarchy.from_parent(parent, 2)
    parent[0] = 1                                   # the caller's tensor, not ours
    assert h.parent.tolist() == [2, 2, -1]
    with pytest.raises(ValueError, match='cycle'):
        Hierarchy.from_parent(torch.tensor([3, 3, 4, 4, 2]), 2)
    with pytest.raises(ValueError, match='internal node 3 has no children'):
        Hierarchy.from_parent(torch.tensor([2, 2, -1, -1]), 2)
