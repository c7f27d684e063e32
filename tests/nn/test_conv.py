import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy, HSAConv, hsa
from hsa_geo.loader import HierarchyLoader
from hsa_geo.testing import flat_tree, hetero_forest, random_forest


def _hetero(seed, in_channels=8, pos_channels=None):
    return hetero_forest(seed, in_channels, pos_channels)


def test_repr_lazy_and_shapes():
    h = Hierarchy.from_parent(*flat_tree(10))
    conv = HSAConv(16, 8, heads=4)
    assert repr(conv) == 'HSAConv(16, 8, heads=4)'
    assert conv(torch.randn(10, 16), h).shape == (10, 32)
    conv = HSAConv(-1, 8, heads=4, concat=False)
    assert conv(torch.randn(10, 5), h).shape == (10, 8)


def test_flat_hierarchy_equals_multihead_attention():
    embed, heads, n = 16, 4, 11
    h = Hierarchy.from_parent(*flat_tree(n))
    conv = HSAConv(embed, embed // heads, heads=heads, include_self=True, qk_norm=False,
                   root_weight=False)
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([conv.lin_query['_leaf'].weight,
                                            conv.lin_key['_leaf'].weight,
                                            conv.lin_value['_leaf'].weight]))
        mha.in_proj_bias.copy_(torch.cat([conv.lin_query['_leaf'].bias,
                                          conv.lin_key['_leaf'].bias,
                                          conv.lin_value['_leaf'].bias]))
        mha.out_proj.weight.copy_(conv.lin_out.weight)
        mha.out_proj.bias.copy_(conv.lin_out.bias)
    x = torch.randn(n, embed)
    expected = mha(x[None], x[None], x[None], need_weights=False)[0][0]
    assert torch.allclose(conv(x, h), expected, atol=1e-5)


def test_batched_forest_equals_each_sample_alone():
    datasets = [_hetero(s, pos_channels=3) for s in range(5)]
    conv = HSAConv(8, 4, heads=2, pos_channels=3)
    alone = []
    for data in datasets:  # seed 4 is a lone leaf: a tree of its own
        h = Hierarchy.from_hetero(data, root_leaves=True)
        pos = {'leaf': data['leaf'].hsa_pos, 'node': data['node'].hsa_pos}
        alone.append(conv(data['leaf'].x, h, pos=pos))
    batch = next(iter(DataLoader(datasets, batch_size=5)))
    h = Hierarchy.from_hetero(batch, root_leaves=True)
    assert h.num_roots == 5 and h.leaf_types == ('leaf', )
    pos = {'leaf': batch['leaf'].hsa_pos, 'node': batch['node'].hsa_pos}
    out = conv(batch['leaf'].x, h, pos=pos)
    assert torch.allclose(out, torch.cat(alone), atol=1e-5)
    # the loader's batch carries the same compiled forest
    batch = next(iter(HierarchyLoader(datasets, batch_size=5, root_leaves=True)))
    assert batch.hierarchy == h
    assert torch.equal(conv(batch['leaf'].x, batch.hierarchy, pos=pos), out)
    # layers never compile: a HeteroData or an edge_index_dict is refused
    for wrong in (batch, batch.edge_index_dict):
        with pytest.raises(TypeError, match='HSA layers do not compile hierarchies'):
            conv(batch['leaf'].x, wrong, pos=pos)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_dataloader_training_step(dtype):
    datasets = [_hetero(s) for s in range(8)]
    conv = HSAConv(8, 4, heads=2).to(dtype)
    for batch in DataLoader(datasets, batch_size=4):
        h = Hierarchy.from_hetero(batch, root_leaves=True)
        out = conv(batch['leaf'].x.to(dtype), h)
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
        out.float().pow(2).mean().backward()
    for name, param in conv.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad.float()).all(), name
        assert param.grad.abs().sum() > 0, name


def test_multimodal_dict_input():
    # two leaf types under one root: 'atom' leaves grouped in 'ring's, and 'token's
    data = HeteroData()
    data['atom'].x = torch.randn(5, 6)
    data['token'].x = torch.randn(3, 4)
    data['ring'].num_nodes = 2
    data['mol'].num_nodes = 1
    data['atom', 'in', 'ring'].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]])
    data['ring', 'in', 'mol'].edge_index = torch.tensor([[0, 1], [0, 0]])
    data['token', 'in', 'mol'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    h = Hierarchy.from_hetero(data, root_leaves=True)
    assert h.leaf_types == ('atom', 'token') and h.num_leaves == 8
    conv = HSAConv({'atom': 6, 'token': 4}, 8, heads=2, pos_channels={'ring': 3, 'token': 2})
    pos = {'ring': torch.randn(2, 3), 'token': torch.randn(3, 2)}
    out = conv({'atom': data['atom'].x, 'token': data['token'].x}, h, pos=pos)
    assert out['atom'].shape == (5, 16) and out['token'].shape == (3, 16)
    # the layer is exactly HSA over the concatenated per-type projections
    q = torch.cat([conv.lin_query['atom'](data['atom'].x),
                   conv.lin_query['token'](data['token'].x)])
    k = torch.cat([conv.lin_key['atom'](data['atom'].x), conv.lin_key['token'](data['token'].x)])
    v = torch.cat([conv.lin_value['atom'](data['atom'].x),
                   conv.lin_value['token'](data['token'].x)])
    q, k = conv.norm_query(q.view(8, 2, 8)), conv.norm_key(k.view(8, 2, 8))
    p = torch.zeros(h.num_nodes, 2, 8)
    s, e = h.node_slices['ring']
    p[s:e] = conv.lin_pos['ring'](pos['ring']).view(-1, 2, 8) * 8 ** -0.25
    s, e = h.node_slices['token']
    p[s:e] = conv.lin_pos['token'](pos['token']).view(-1, 2, 8) * 8 ** -0.25
    att = hsa(q, k, v.view(8, 2, 8), h, pos=p).reshape(8, 16)
    skip = torch.cat([conv.lin_skip['atom'](data['atom'].x),
                   conv.lin_skip['token'](data['token'].x)])
    expected = conv.lin_out(att) + skip
    assert torch.allclose(torch.cat([out['atom'], out['token']]), expected, atol=1e-5)


@pytest.mark.slow
def test_tiny_model_overfits():
    torch.manual_seed(0)
    data = [_hetero(s) for s in range(4)]
    batch = next(iter(DataLoader(data, batch_size=4)))
    h = Hierarchy.from_hetero(batch, root_leaves=True)
    target = torch.randn(batch['leaf'].num_nodes, 3)
    conv1, conv2 = HSAConv(8, 8, heads=2), HSAConv(16, 3, heads=1)
    params = list(conv1.parameters()) + list(conv2.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = (conv2(conv1(batch['leaf'].x, h).relu(), h) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_errors():
    h = Hierarchy.from_parent(*flat_tree(4))
    conv = HSAConv(8, 4)
    with pytest.raises(ValueError, match="'x' has 3 rows but the hierarchy has 4 leaves"):
        conv(torch.randn(3, 8), h)
    with pytest.raises(ValueError, match='no position projection'):
        conv(torch.randn(4, 8), h, pos=torch.randn(5, 2))
    with pytest.raises(TypeError, match="'hierarchy' must be a compiled Hierarchy"):
        conv(torch.randn(4, 8), torch.tensor([4, 4, 4, 4, -1]))
    with pytest.raises(TypeError, match='built for a single leaf type'):
        conv({'a': torch.randn(4, 8)}, h)


@pytest.mark.slow
def test_compile_fullgraph_without_breaks():
    data = _hetero(3)
    h = Hierarchy.from_hetero(data, root_leaves=True)
    conv = HSAConv(8, 4, heads=2)
    x = data['leaf'].x
    explain = torch._dynamo.explain(conv)(x, h)
    assert explain.graph_break_count == 0
    compiled = torch.compile(conv, fullgraph=True)
    assert torch.allclose(compiled(x, h), conv(x, h), atol=1e-5)


def test_attention_weights_match_the_layer():
    data = _hetero(7)
    h = Hierarchy.from_hetero(data, root_leaves=True)
    conv = HSAConv(8, 4, heads=2, root_weight=False)
    x = data['leaf'].x
    weights = conv.attention_weights(x, h)                         # block form
    assert weights.delta.shape == (h.num_pairs, 2)
    theta = weights.dense()                                        # [H, L, L]
    v = conv.lin_value['_leaf'](x).view(-1, 2, 4).double()
    att = torch.einsum('hij,jhd->ihd', theta, v).reshape(-1, 8).float()
    assert torch.allclose(conv.lin_out(att), conv(x, h), atol=1e-5)


@pytest.mark.parametrize('seed', range(4))
def test_return_attention_weights_in_pyg_form(seed):
    parent, n = random_forest(seed, num_roots=2)
    h = Hierarchy.from_parent(parent, n)
    conv = HSAConv(8, 4, heads=3)
    x = torch.randn(n, 8)
    out, (edge_index, alpha) = conv(x, h, return_attention_weights=True)
    assert torch.equal(out, conv(x, h))
    assert torch.equal(edge_index, h.sibling_index) and alpha.shape == (h.num_pairs, 3)
    # every node's row: the shares sent to its siblings plus the kept share mu
    weights = conv.attention_weights(x, h)
    row = torch.zeros(h.num_nodes, 3).index_add_(0, edge_index[0], alpha)
    has_siblings = torch.zeros(h.num_nodes, dtype=torch.bool)
    has_siblings[edge_index[0]] = True
    total = row + weights.mu
    assert torch.allclose(total[has_siblings], torch.ones_like(total[has_siblings]),
                          atol=1e-5)
    # alpha(A, B) is the dense matrix's mass of A's first leaf on B's leaves,
    # divided by the share that reaches A from above
    theta = weights.dense()
    members = torch.zeros(h.num_nodes, n, dtype=torch.float64)
    for leaf in range(n):
        node = leaf
        while node >= 0:
            members[node, leaf] = 1
            node = int(h.parent[node])
    for p in range(0, h.num_pairs, max(1, h.num_pairs // 7)):
        a, b = edge_index[:, p].tolist()
        leaf = int(members[a].nonzero()[0])
        mass_b = theta[:, leaf] @ members[b]                       # [H]
        above = torch.ones(3, dtype=torch.float64)
        node = int(h.parent[a])
        while node >= 0 and int(h.parent[node]) >= 0:  # mu of A's proper ancestors
            above = above * weights.mu[node].double()
            node = int(h.parent[node])
        assert torch.allclose(mass_b, above * alpha[p].double(), atol=1e-6)


@pytest.mark.slow
def test_compile_training_with_attention_dropout():
    data = _hetero(4)
    h = Hierarchy.from_hetero(data, root_leaves=True)
    conv = HSAConv(8, 4, heads=2, dropout=0.2).train()
    x = data['leaf'].x
    assert torch._dynamo.explain(conv)(x, h).graph_break_count == 0
    torch.compile(conv, fullgraph=True)(x, h).pow(2).sum().backward()
    assert all(p.grad is not None for p in conv.parameters())
