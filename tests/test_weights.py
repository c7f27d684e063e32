import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hsa_geo import Hierarchy
from hsa_geo.reference import attention_matrix
from hsa_geo.testing import random_forest
from hsa_geo.weights import hsa_weights


@given(seed=st.integers(0, 10**6), include_self=st.booleans(), causal=st.booleans())
@settings(max_examples=40)
def test_block_weights_expand_to_the_reference_matrix(seed, include_self, causal):
    parent, n = random_forest(seed, 2, 3, 5)
    h = Hierarchy.from_parent(parent, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 2, 3, generator=gen, dtype=torch.float64)
    k = torch.randn(n, 2, 3, generator=gen, dtype=torch.float64)
    pos = torch.randn(h.num_nodes, 2, 2, generator=gen, dtype=torch.float64)
    bias = torch.randn(h.num_pairs, generator=gen, dtype=torch.float64)
    w = hsa_weights(q, k, h, pos, bias, include_self, causal)
    assert w.delta.shape == (h.num_pairs, 2) and w.mu.shape == (h.num_nodes, 2)
    ref = attention_matrix(q, k, h, pos, bias, include_self, causal)
    assert torch.allclose(w.dense(), ref, atol=1e-12)
    for leaf in range(0, n, 3):
        assert torch.allclose(w.row(leaf), ref[:, leaf], atol=1e-12)
    with pytest.raises(ValueError, match="'leaf'"):
        w.row(n)


def test_mu_values():
    # flat tree of 3 leaves: leaves keep nothing without self, the root keeps all
    h = Hierarchy.from_parent(torch.tensor([3, 3, 3, -1]), 3)
    q = torch.randn(3, 1, 2)
    w = hsa_weights(q, q, h)
    assert w.mu[:3].abs().max() == 0 and w.mu[3].item() == 1


def test_plot_writes_png(tmp_path):
    pytest.importorskip('matplotlib')
    parent, n = random_forest(1, 1, 3, 4)
    h = Hierarchy.from_parent(parent, n)
    q = torch.randn(n, 1, 4)
    path = tmp_path / 'theta.png'
    hsa_weights(q, q, h).plot(str(path))
    assert path.stat().st_size > 1000
