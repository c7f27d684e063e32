import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo.nn import (
    HSAEncoderLayer,
    HSATransformer,
    depth_pool,
    root_pool,
    subtree_pool,
    type_pool,
)
from hsa_geo.testing import flat_tree, random_forest


@pytest.mark.parametrize('style', ['hte', 'prenorm'])
def test_encoder_layer_and_stack(style):
    parent, n = random_forest(2, 3, 3, 4)
    h = Hierarchy.from_parent(parent, n)
    x = torch.randn(n, 16)
    layer = HSAEncoderLayer(16, 16, heads=4, style=style)
    assert repr(layer) == f"HSAEncoderLayer(16, 16, heads=4, style='{style}')"
    assert layer(x, h).shape == (n, 16)
    model = HSATransformer(16, 16, num_layers=3, heads=2, style=style)
    out = model(x, h)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_hte_layer_matches_its_formula():
    parent, n = random_forest(4, 2, 3, 4)
    h = Hierarchy.from_parent(parent, n)
    layer = HSAEncoderLayer(6, 8, heads=2, style='hte').eval()
    x = torch.randn(n, 6)
    conv = layer.attn
    q = conv.norm_query(conv.lin_query['_leaf'](x).view(n, 2, 4))
    k = conv.norm_key(conv.lin_key['_leaf'](x).view(n, 2, 4))
    v = conv.lin_value['_leaf'](x).view(n, 2, 4)
    hid = layer.norm1(conv.lin_out((hsa(q, k, v, h) + q).reshape(n, 8)))
    assert torch.allclose(layer(x, h), hid + layer.ffn(hid), atol=1e-5)


def test_layer_errors():
    with pytest.raises(ValueError, match="'style' must be one of"):
        HSAEncoderLayer(8, 8, style='post')
    with pytest.raises(ValueError, match="must equal 'channels'"):
        HSAEncoderLayer(6, 8, style='prenorm')
    with pytest.raises(ValueError, match='divisible'):
        HSAEncoderLayer(8, 6, heads=4)


def test_pooling():
    # leaves 0..4; node 5 = {0, 1}, node 6 = {5, 2}, root 7 = {6, 3}; leaf 4 alone
    parent = torch.tensor([5, 5, 6, 7, -1, 6, 7, -1])
    h = Hierarchy.from_parent(parent, 5)
    x = torch.arange(5, dtype=torch.float).view(-1, 1)
    assert root_pool(x, h).view(-1).tolist() == [4.0, 1.5]       # roots 4, 7
    assert root_pool(x, h, 'sum').view(-1).tolist() == [4.0, 6.0]
    out, nodes = depth_pool(x, h, 1)
    assert nodes.tolist() == [3, 6] and out.view(-1).tolist() == [3.0, 1.0]
    out = subtree_pool(x, h, torch.tensor([5, 6, 0]))
    assert out.view(-1).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="'node_type'"):
        type_pool(x, h, 'atom')
    flat = Hierarchy.from_parent(*flat_tree(4))
    assert torch.allclose(root_pool(torch.ones(4, 3), flat), torch.ones(1, 3))
