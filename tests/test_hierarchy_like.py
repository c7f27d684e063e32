import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo.distributed import ShardedHierarchy
from hsa_geo.functional import FlatFamilies, LoneLeaves
from hsa_geo.hierarchy_like import HierarchyLike
from hsa_geo.nn import HSAConv, root_pool


def _tree():
    return Hierarchy.from_parent(torch.tensor([5, 5, 6, 6, 6, 7, 7, -1]), 5)


def test_every_hierarchy_like_structure_implements_the_protocol():
    h = _tree()
    sharded = ShardedHierarchy(h)
    for structure in (h, LoneLeaves(h), FlatFamilies(None), sharded):
        assert isinstance(structure, HierarchyLike)
    assert FlatFamilies(None).num_leaves is None and LoneLeaves(h).num_leaves == 5
    assert not LoneLeaves(h).has_attention and h.has_attention


def test_hsa_and_the_layers_ask_the_protocol_not_the_type():
    # a new kind of hierarchy is a subclass: hsa() and HSAConv call its methods
    class Reversed(HierarchyLike):
        r"""The leaves in reverse order over another hierarchy."""
        def __init__(self, inner):
            self.inner, self.num_leaves = inner, inner.num_leaves

        def attend(self, q, k, v, **options):
            return hsa(q.flip(0), k.flip(0), v.flip(0), self.inner, **options).flip(0)

        def pair_hierarchy(self, num_leaves, device):
            raise ValueError('no pairs of its own')

    h = _tree()
    q, k, v = (torch.randn(5, 2, 4, dtype=torch.float64) for _ in range(3))
    out = hsa(q, k, v, Reversed(h), include_self=True)
    expected = hsa(q.flip(0), k.flip(0), v.flip(0), h, include_self=True).flip(0)
    assert torch.equal(out, expected)
    conv = HSAConv(4, 4, heads=2).double()
    assert conv(torch.randn(5, 4, dtype=torch.float64), Reversed(h)).shape == (5, 8)
    with pytest.raises(ValueError, match='no pairs of its own'):
        conv(torch.randn(5, 4, dtype=torch.float64), Reversed(h),
             return_attention_weights=True)
    root_pool(torch.randn(5, 3), h)          # refuse_pooling: nothing to refuse


def test_anything_else_is_refused_by_name():
    q = torch.randn(5, 2, 4)
    with pytest.raises(TypeError, match="'hierarchy' must be a compiled Hierarchy"):
        hsa(q, q, q, torch.tensor([5, 5, 6, 6, 6, 7, 7, -1]))


def test_flat_families_give_attention_weights_of_their_flat_hierarchy():
    conv = HSAConv(4, 4, heads=2).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    weights = conv.attention_weights(x, FlatFamilies(batch))
    expected = conv.attention_weights(x, Hierarchy.from_batch(batch, 6))
    assert torch.equal(weights.sibling_index, expected.sibling_index)
    assert torch.allclose(weights.delta, expected.delta)
