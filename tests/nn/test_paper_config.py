r"""The pieces of the paper's from-scratch configuration: heads wider than
``channels // heads``, one position projection per position type, pooling
per leaf type."""
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy
from hsa_geo.functional import hsa
from hsa_geo.nn import HSAConv, HSAEncoderLayer, HTEPredictor, leaf_type_pool, root_pool


def _two_types(seed: int, atoms: int = 5, tokens: int = 3) -> HeteroData:
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['atom'].x = torch.randn(atoms, 6, generator=gen)
    data['token'].x = torch.randn(tokens, 4, generator=gen)
    data['ring'].num_nodes = 2
    data['mol'].num_nodes = 1
    data['atom', 'in', 'ring'].edge_index = torch.stack(
        [torch.arange(atoms), (torch.arange(atoms) >= atoms // 2).long()])
    data['ring', 'in', 'mol'].edge_index = torch.tensor([[0, 1], [0, 0]])
    data['token', 'in', 'mol'].edge_index = torch.stack(
        [torch.arange(tokens), torch.zeros(tokens, dtype=torch.long)])
    for t, n in (('atom', atoms), ('token', tokens), ('ring', 2)):
        data[t].hsa_pos = torch.randn(n, 3, generator=gen)
    return data


def _inputs(data):
    h = Hierarchy.from_hetero(data)
    x = {t: data[t].x for t in ('atom', 'token')}
    pos = {t: data[t].hsa_pos for t in ('atom', 'token', 'ring')}
    return h, x, pos


def test_grouped_position_projection_is_shared():
    data = _two_types(0)
    h, x, pos = _inputs(data)
    torch.manual_seed(0)
    grouped = HSAConv({'atom': 6, 'token': 4}, 8, heads=2,
                      pos_channels={('atom', 'token'): 3, 'ring': 3})
    assert sorted(grouped.lin_pos) == ['atom|token', 'ring']
    # the same projection applied to both types by hand
    q = torch.cat([grouped.lin_query[t](x[t]) for t in x]).view(-1, 2, 8)
    k = torch.cat([grouped.lin_key[t](x[t]) for t in x]).view(-1, 2, 8)
    v = torch.cat([grouped.lin_value[t](x[t]) for t in x]).view(-1, 2, 8)
    q, k = grouped.norm_query(q), grouped.norm_key(k)
    p = torch.zeros(h.num_nodes, 2, 8)
    for t, lin in (('atom', 'atom|token'), ('token', 'atom|token'), ('ring', 'ring')):
        s, e = h.node_slices[t]
        p[s:e] = grouped.lin_pos[lin](pos[t]).view(-1, 2, 8) * 8 ** -0.25
    expected = grouped.lin_out(hsa(q, k, v, h, pos=p).reshape(-1, 16)) + torch.cat(
        [grouped.lin_skip[t](x[t]) for t in x])
    out = grouped(x, h, pos=pos)
    assert torch.allclose(torch.cat([out['atom'], out['token']]), expected, atol=1e-5)
    # the shared projection has one weight, the per-type one two
    per_type = HSAConv({'atom': 6, 'token': 4}, 8, heads=2,
                       pos_channels={'atom': 3, 'token': 3, 'ring': 3})
    def count(conv):
        return sum(p.numel() for n, p in conv.named_parameters() if 'lin_pos' in n)
    assert count(per_type) == 3 * 16 * 3 and count(grouped) == 2 * 16 * 3
    # gradients reach the shared weight from both types
    out['atom'].sum().backward()
    assert grouped.lin_pos['atom|token'].weight.grad.abs().sum() > 0


def test_grouped_position_errors():
    with pytest.raises(ValueError, match="names node type 'a' twice"):
        HSAConv(4, 4, pos_channels={('a', 'b'): 2, 'a': 2})
    with pytest.raises(TypeError, match="'pos_channels' keys"):
        HSAConv(4, 4, pos_channels={(): 2})
    data = _two_types(1)
    h, x, pos = _inputs(data)
    conv = HSAConv({'atom': 6, 'token': 4}, 8, pos_channels={('atom', 'token'): 3})
    with pytest.raises(ValueError, match="node type 'ring' but pos_channels has no entry"):
        conv(x, h, pos=pos)


def test_head_channels_decouple_heads_from_width():
    torch.manual_seed(0)
    layer = HSAEncoderLayer(12, 16, heads=3, head_channels=8)
    data = _two_types(2)
    h = Hierarchy.from_hetero(data)
    out = layer(torch.randn(h.num_leaves, 12), h)
    assert out.shape == (h.num_leaves, 16)
    assert layer.attn.lin_query['_leaf'].out_channels == 24
    assert layer.attn.lin_out.in_channels == 24 and layer.attn.lin_out.out_channels == 16
    # head_channels = channels // heads is the default layer
    torch.manual_seed(1)
    a = HSAEncoderLayer(12, 16, heads=4)
    torch.manual_seed(1)
    b = HSAEncoderLayer(12, 16, heads=4, head_channels=4)
    x = torch.randn(h.num_leaves, 12)
    assert torch.equal(a(x, h), b(x, h))
    with pytest.raises(ValueError, match="divisible by 'heads'"):
        HSAEncoderLayer(12, 16, heads=3)
    with pytest.raises(ValueError, match="'head_channels' needs style='hte'"):
        HSAEncoderLayer(16, 16, heads=3, head_channels=8, style='prenorm')
    with pytest.raises(ValueError, match="'proj_channels' must be a positive int"):
        HSAConv(4, 4, proj_channels=0)


def test_paper_table1_encoder_size():
    # 3 heads of width 128 over T5-small-sized leaves, output 128, 768-dim
    # positions: the order of the paper's 1.2M parameters (1.0M; 1.17M with
    # MiniLM's 384-dim leaves, as examples/hierarchical_text.py reports)
    model = HTEPredictor(512, 128, 2, heads=3, head_channels=128, pos_channels=768)
    count = sum(p.numel() for p in model.parameters())
    assert 0.9e6 < count < 1.3e6


def test_leaf_type_pool():
    batch = next(iter(DataLoader([_two_types(3, 5, 3), _two_types(4, 2, 6)], batch_size=2)))
    h, x, _ = _inputs(batch)
    x = {t: v[:, :4] for t, v in x.items()}
    # by hand: per sample, the mean of its atoms' and of its tokens' means
    expected = torch.stack([
        (x['atom'][batch['atom'].batch == i].mean(0)
         + x['token'][batch['token'].batch == i].mean(0)) / 2 for i in range(2)])
    assert torch.allclose(leaf_type_pool(x, h), expected, atol=1e-6)
    flat = torch.cat([x['atom'], x['token']])
    assert torch.allclose(leaf_type_pool(flat, h), expected, atol=1e-6)
    # a tree without one of the types averages over the types it has
    one = HeteroData()
    one['a'].num_nodes, one['b'].num_nodes, one['r'].num_nodes = 2, 0, 2
    one['a', 'in', 'r'].edge_index = torch.tensor([[0, 1], [0, 1]])
    one['b', 'in', 'r'].edge_index = torch.zeros(2, 0, dtype=torch.long)
    h1 = Hierarchy.from_hetero(one)
    out = leaf_type_pool({'a': torch.tensor([[1.], [3.]]), 'b': torch.zeros(0, 1)}, h1)
    assert out.view(-1).tolist() == [1.0, 3.0]
    # with one leaf type it is the mean of the leaves
    h2 = Hierarchy.from_parent(torch.tensor([3, 3, 4, -1, -1]), 3)
    y = torch.randn(3, 2)
    assert torch.allclose(leaf_type_pool(y, h2), root_pool(y, h2))
    with pytest.raises(ValueError, match="'x' has 2 rows"):
        leaf_type_pool(torch.randn(2, 2), h2)


def test_predictor_pools_per_leaf_type():
    batch = next(iter(DataLoader([_two_types(5), _two_types(6, 3, 7)], batch_size=2)))
    h, x, pos = _inputs(batch)
    torch.manual_seed(0)
    model = HTEPredictor({'atom': 6, 'token': 4}, 8, 2, heads=2, pool_leaf_types=True)
    assert repr(model) == 'HTEPredictor(' + repr({'atom': 6, 'token': 4}) + \
        ', 8, 2, attention=True, pool_leaf_types=True)'
    encoded = model.encoder(x, h)
    assert torch.allclose(model(x, h), model.head(leaf_type_pool(encoded, h)), atol=1e-6)
    model.pool_leaf_types = False
    assert not torch.allclose(model(x, h), model.head(leaf_type_pool(encoded, h)))
