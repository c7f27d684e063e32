r"""A hierarchy stored as HeteroData decoded into a parent vector
(:mod:`hsa_geo.hetero`): the compiled pass (numba) and the PyTorch code give
the same parent vector, and the compiled pass refuses exactly the edges the
PyTorch code raises on (which then names the fault)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip('numba')

from hsa_geo import Hierarchy  # noqa: E402
from hsa_geo.hetero import _parent_compiled, _parent_torch, parent_from_hetero  # noqa: E402
from hsa_geo.testing import hetero_forest  # noqa: E402

SLICES = {'leaf': (0, 4), 'mid': (4, 6), 'top': (6, 7)}
ORDER = ['leaf', 'mid', 'top']
COUNTS = {t: b - a for t, (a, b) in SLICES.items()}


def _both(links, root_leaves=False):
    compiled = _parent_compiled(links, SLICES, 7, 4, root_leaves)
    try:
        expected = _parent_torch(links, SLICES, ORDER, 7, 4, 'in', root_leaves, COUNTS)
    except ValueError:
        assert compiled is None
        return None
    assert compiled is not None and torch.equal(compiled, expected)
    return expected


@pytest.mark.parametrize('dtype', [torch.int64, torch.int32])
def test_a_valid_hierarchy_decodes_alike(dtype):
    links = {('leaf', 'in', 'mid'): torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]], dtype=dtype),
             ('mid', 'in', 'top'): torch.tensor([[0, 1], [0, 0]], dtype=dtype)}
    assert _both(links).tolist() == [4, 4, 5, 5, 6, 6, -1]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), root_leaves=st.booleans())
def test_faulty_edges_are_refused_alike(data, root_leaves):
    r"""Random edges between the three types: indices out of range, two
    parents, childless clusters, orphan leaves, and valid ones."""
    def edges(src, dst):
        n = data.draw(st.integers(0, 6))
        rows = [data.draw(st.lists(st.integers(-1, COUNTS[t]), min_size=n, max_size=n))
                for t in (src, dst)]
        return torch.tensor(rows, dtype=torch.long).view(2, n)
    links = {('leaf', 'in', 'mid'): edges('leaf', 'mid'),
             ('mid', 'in', 'top'): edges('mid', 'top')}
    _both(links, root_leaves)


@pytest.mark.parametrize('seed', range(6))
def test_from_hetero_equals_from_parent(seed):
    data = hetero_forest(seed)
    parent, num_leaves, slices, leaf_types, device = parent_from_hetero(data, root_leaves=True)
    h = Hierarchy.from_hetero(data, root_leaves=True)
    assert h == Hierarchy.from_parent(parent, num_leaves) and leaf_types == ['leaf']
    assert dict(h.node_slices) == slices and device == torch.device('cpu')
