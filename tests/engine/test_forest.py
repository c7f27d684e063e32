r"""The engine's Forest: the families compiled straight from the parent
vector (numba) equal those derived from the padded layout, field by field;
the sibling pairs are the same whichever form is built; a batch that runs on
the fused kernels never builds the padded layout."""
import dataclasses
import pickle

import pytest
import torch

pytest.importorskip('numba')

from hsa_geo import Hierarchy, hsa  # noqa: E402
from hsa_geo.engine.families import Families, families_from_parent, families_of  # noqa: E402
from hsa_geo.engine.forest import Forest  # noqa: E402
from hsa_geo.testing import degenerate_forests, random_forest, random_ragged_tree, regular_tree  # noqa: E402

CASES = [random_forest(s, 3, 4, 7) for s in range(25)] + \
    [(p, n) for _, p, n in degenerate_forests()] + \
    [random_ragged_tree(3000, 2, 32, seed=1), regular_tree(256, (4, 4, 4, 4))]


def _same(a: Families, b: Families) -> None:
    for f in dataclasses.fields(Families):
        if f.name == 'cache':
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, f.name


@pytest.mark.parametrize('parent,num_leaves', CASES)
def test_families_from_the_parent_vector_equal_those_of_the_layout(parent, num_leaves):
    h = Hierarchy.from_parent(parent, num_leaves)
    _same(families_from_parent(h.parent, num_leaves), families_of(h.layout))


@pytest.mark.parametrize('parent,num_leaves', CASES[::3])
def test_sibling_pairs_do_not_depend_on_the_form_built(parent, num_leaves):
    h = Hierarchy.from_parent(parent, num_leaves)
    lazy = Forest(h.parent, num_leaves)
    assert lazy.num_pairs == h.layout.num_pairs and lazy.num_levels == h.layout.num_levels
    assert torch.equal(lazy.sibling_index(), h.layout.sibling_index())
    assert lazy._layout is None        # answered from the families alone


def test_a_batch_on_the_fused_kernels_never_builds_the_padded_layout(monkeypatch):
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1')
    h = Hierarchy.from_parent(*random_forest(5, 3, 3, 6))
    q = torch.randn(h.num_leaves, 2, 4, requires_grad=True)
    bias = torch.randn(h.num_pairs, requires_grad=True)
    hsa(q, q, q, h, bias=bias).sum().backward()
    assert h.forest._layout is None
    # the PyTorch path builds it on demand and gives the same answer
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '0')
    expected = hsa(q, q, q, h, bias=bias)
    assert h.forest._layout is not None
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1')
    assert torch.allclose(hsa(q, q, q, h, bias=bias), expected, atol=1e-5)


def test_a_forest_pickles_and_moves_without_its_compiled_forms():
    h = Hierarchy.from_parent(*random_forest(2, 2, 3, 5))
    h.layout, h.forest.families  # noqa: B018 (build both)
    # a Forest alone is saved without its compiled forms (rebuilt on first use) ...
    forest = pickle.loads(pickle.dumps(h.forest))
    assert forest._layout is None and forest._families is None
    assert torch.equal(forest.sibling_index(), h.sibling_index)
    # ... and a Hierarchy as its parent vector, compiled and checked again on loading
    saved = pickle.dumps(h)
    assert len(saved) < len(pickle.dumps((h.forest.families, h.layout)))
    loaded = pickle.loads(saved)
    assert loaded.forest._layout is None
    assert loaded == h and torch.equal(loaded.sibling_index, h.sibling_index)
    moved = h.forest.to('cpu')
    assert moved._families is None and moved._layout is not None
