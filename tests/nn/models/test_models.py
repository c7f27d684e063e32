import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy
from hsa_geo.functional import LoneLeaves
from hsa_geo.nn import HSAEncoderLayer, HSATransformer, HTEPredictor
from hsa_geo.reference import hsa_dense
from hsa_geo.testing import random_forest
from hsa_geo.transforms import FlatHierarchy, TextHierarchy

TEXTS = ['One short line.', 'Two sentences here. And one more, longer than the first!',
         'A paragraph.\n\nAnother paragraph with more words in it.']


def _batches(pos_dim=8):
    trees = [TextHierarchy(pos_dim=pos_dim)(Data(text=t, y=torch.tensor([i % 2])))
             for i, t in enumerate(TEXTS)]
    flat = [FlatHierarchy(pos_dim)(t) for t in trees]
    return (next(iter(DataLoader(trees, batch_size=3))),
            next(iter(DataLoader(flat, batch_size=3))))


def _pos(batch):
    return {t: batch[t].hsa_pos for t in batch.node_types}


def test_hsa_fsa_deepset_share_parameters():
    counts = {att: sum(p.numel() for p in HTEPredictor(12, 16, 3, heads=4, pos_channels=8,
                                                        attention=att).parameters())
              for att in (True, False)}
    assert counts[True] == counts[False]
    tree, flat = _batches()
    torch.manual_seed(0)
    model = HTEPredictor(12, 16, 3, heads=4, pos_channels=8)
    x = torch.randn(tree['token'].num_nodes, 12)
    out_tree = model(x, Hierarchy.from_hetero(tree), _pos(tree))
    out_flat = model(x, Hierarchy.from_hetero(flat), _pos(flat))
    assert out_tree.shape == out_flat.shape == (3, 3)
    assert not torch.allclose(out_tree, out_flat)  # the attention differs, nothing else
    assert repr(model) == "HTEPredictor(12, 16, 3, attention=True)"


@pytest.mark.slow
def test_flat_variant_is_softmax_attention():
    _, flat = _batches()
    h = Hierarchy.from_hetero(flat)
    torch.manual_seed(1)
    model = HTEPredictor(12, 16, 2, heads=4, pos_channels=8).eval().double()
    x = torch.randn(h.num_leaves, 12, dtype=torch.float64)
    layer = model.encoder.layers[0]
    conv = layer.attn
    n, heads, d = h.num_leaves, 4, 4
    q = conv.norm_query(conv.lin_query['_leaf'](x).view(n, heads, d))
    k = conv.norm_key(conv.lin_key['_leaf'](x).view(n, heads, d))
    v = conv.lin_value['_leaf'](x).view(n, heads, d)
    eps = conv.lin_pos(flat['token'].hsa_pos.double()).view(n, heads, d) * d ** -0.25
    # ordinary softmax attention within each text, diagonal excluded
    scores = (torch.einsum('ihd,jhd->hij', q, k) / d ** 0.5
              + torch.einsum('ihd,jhd->hij', eps, eps))
    same_text = flat['token'].batch.view(-1, 1) == flat['token'].batch.view(1, -1)
    mask = same_text & ~torch.eye(n, dtype=torch.bool)
    attn = scores.masked_fill(~mask, float('-inf')).softmax(dim=-1)
    softmax_out = torch.einsum('hij,jhd->ihd', attn, v)
    hidden = layer.norm1(conv.lin_out((softmax_out + q).reshape(n, heads * d)))
    encoded = hidden + layer.ffn(hidden)
    expected = model.head(torch.stack([encoded[flat['token'].batch == b].mean(0)
                                       for b in range(3)]))
    pos = {t: p.double() for t, p in _pos(flat).items()}
    assert torch.allclose(model(x, h, pos), expected, atol=1e-10)


def test_no_attention_is_a_deepset():
    tree, _ = _batches()
    h = Hierarchy.from_hetero(tree)
    torch.manual_seed(2)
    model = HTEPredictor(12, 16, 2, heads=4, pos_channels=8, attention=False).eval()
    encoder = model.encoder
    x = torch.randn(h.num_leaves, 12)
    out = encoder(x, LoneLeaves(h))
    y = x.clone()
    y[1:] = torch.randn_like(y[1:])         # every other leaf changes
    assert torch.allclose(encoder(y, LoneLeaves(h))[0], out[0], atol=1e-6)
    # and the pooled prediction is the head of the mean of per-leaf encodings
    batch = tree['token'].batch
    expected = model.head(torch.stack([out[batch == b].mean(0) for b in range(3)]))
    assert torch.allclose(model(x, h, _pos(tree)), expected, atol=1e-6)
    with pytest.raises(TypeError, match="'attention'"):
        HTEPredictor(12, 16, 2, attention='none')


@pytest.mark.parametrize('seed', range(3))
def test_multimodal_transformer_against_reference(seed):
    parent, n = random_forest(seed, 2, 3, 4)
    base = Hierarchy.from_parent(parent, n)
    split = n // 2
    h = Hierarchy.from_parent(parent, n).with_node_types(
        {'a': (0, split), 'b': (split, n), 'cluster': (n, parent.numel())})
    torch.manual_seed(seed)
    x = {'a': torch.randn(split, 5, dtype=torch.float64),
         'b': torch.randn(n - split, 7, dtype=torch.float64)}
    model = HSATransformer({'a': 5, 'b': 7}, 8, num_layers=2, heads=2).double().eval()
    out = model(x, h)
    assert set(out) == {'a', 'b'} and out['b'].shape == (n - split, 8)
    # layer by layer with the dense reference: per-type projections, then shared
    first, second = model.layers
    conv = first.attn
    q = torch.cat([conv.lin_query[t](x[t]) for t in 'ab']).view(n, 2, 4)
    k = torch.cat([conv.lin_key[t](x[t]) for t in 'ab']).view(n, 2, 4)
    v = torch.cat([conv.lin_value[t](x[t]) for t in 'ab']).view(n, 2, 4)
    q, k = conv.norm_query(q), conv.norm_key(k)
    hid = first.norm1(conv.lin_out((hsa_dense(q, k, v, base) + q).reshape(n, 8)))
    hid = hid + first.ffn(hid)
    expected = second(hid, base)
    assert torch.allclose(torch.cat([out['a'], out['b']]), expected, atol=1e-10)
    with pytest.raises(ValueError, match="needs style='hte'"):
        HSAEncoderLayer({'a': 8}, 8, style='prenorm')
    with pytest.raises(ValueError, match="needs style='hte'"):
        HSATransformer({'a': 8}, 8, num_layers=1, style='prenorm')


def test_multimodal_predictor_trains():
    parent, n = random_forest(5, 3, 3, 4)
    h = Hierarchy.from_parent(parent, n).with_node_types(
        {'a': (0, 3), 'b': (3, n), 'cluster': (n, parent.numel())})
    x = {'a': torch.randn(3, 5), 'b': torch.randn(n - 3, 7)}
    for attention in (True, False):
        model = HTEPredictor({'a': 5, 'b': 7}, 8, 2, heads=2, attention=attention)
        out = model(x, h)
        assert out.shape == (h.num_roots, 2)
        out.sum().backward()


def _node_graph(num_nodes=240, pos_dim=4):
    from hsa_geo.datasets import planted_node_dataset
    from hsa_geo.transforms import GraphHierarchy
    graph = planted_node_dataset(num_nodes, avg_degree=6, num_parts=(3, 4), within=(0.6, 0.3),
                                 num_features=7, num_classes=3, seed=2)
    return GraphHierarchy(method='metis', num_parts=(3, 4), pos_dim=pos_dim)(graph)


def test_graph_transformer_attends_as_the_dense_reference(monkeypatch):
    import hsa_geo.nn.conv as conv_module
    from hsa_geo.nn import HSAGraphTransformer
    data = _node_graph()
    h = Hierarchy.from_hetero(data)
    torch.manual_seed(0)
    model = HSAGraphTransformer(7, 8, 3, num_layers=2, heads=2, conv=None, norm=None,
                                pos_channels=4).double().eval()
    x, edge_index = data['node'].x.double(), data['node', 'to', 'node'].edge_index
    pos = {t: data[t].hsa_pos.double() for t in data.node_types}
    out = model(x, edge_index, h, pos)
    assert out.shape == (240, 3) and torch.isfinite(out).all()
    # the same model with every attention computed by the dense O(N^2) matrix
    monkeypatch.setattr(conv_module, 'hsa', lambda q, k, v, hierarchy, pos=None, dropout=0.0,
                        **kw: hsa_dense(q, k, v, hierarchy, pos=pos, **kw))
    assert torch.allclose(out, model(x, edge_index, h, pos), atol=1e-10)
    # positions reach the attention: other positions, other outputs
    monkeypatch.undo()
    moved = {t: p.flip(0) for t, p in pos.items()}
    assert not torch.allclose(out, model(x, edge_index, h, moved))


def test_graph_transformer_local_layers_and_arguments():
    from torch_geometric.nn import GCNConv

    from hsa_geo.nn import HSAGraphTransformer
    data = _node_graph()
    h = Hierarchy.from_hetero(data)
    model = HSAGraphTransformer(7, 8, 3, num_layers=3, heads=2, pos_channels=4)
    assert repr(model) == 'HSAGraphTransformer(7, 8, 3, num_layers=3)'
    convs = [layer.conv for layer in model.layers]
    assert all(type(c).__name__ == 'SAGEConv' for c in convs)        # the default
    assert convs[0].lin_l.weight.data_ptr() != convs[1].lin_l.weight.data_ptr()
    assert not torch.equal(convs[0].lin_l.weight, convs[1].lin_l.weight)  # fresh per layer
    out = model(data['node'].x, data['node', 'to', 'node'].edge_index, h, data.hsa_pos_dict)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    gcn = HSAGraphTransformer(7, 8, 3, conv=GCNConv(8, 8))
    assert type(gcn.layers[1].conv).__name__ == 'GCNConv'
    assert all(layer.conv is None for layer in HSAGraphTransformer(7, 8, 3, conv=None).layers)
    with pytest.raises(TypeError, match="'conv' must be a torch.nn.Module"):
        HSAGraphTransformer(7, 8, 3, conv='sage')
    with pytest.raises(ValueError, match="'num_layers' must be at least 1"):
        HSAGraphTransformer(7, 8, 3, num_layers=0)
