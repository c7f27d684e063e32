import pytest
import torch

transformers = pytest.importorskip('transformers')
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel  # noqa: E402

from hsa_geo import Hierarchy  # noqa: E402
from hsa_geo.reference import hsa_dense  # noqa: E402
from hsa_geo.zero_shot import (  # noqa: E402
    HSAMultiheadAttention,
    attention_flops,
    attention_layers,
    inject,
    restore,
    set_hierarchy,
    token_forest,
)


def tiny(kind='bert', layers=3):
    torch.manual_seed(0)
    if kind == 'bert':
        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                            num_attention_heads=4, intermediate_size=64,
                            initializer_range=0.5)
        return BertModel(config).eval()
    config = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=64, pad_token_id=1,
                           initializer_range=0.5)
    return RobertaModel(config).eval()


def batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (3, 13))
    mask = torch.ones(3, 13, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    return ids, mask


def embed(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kwargs)


@pytest.mark.parametrize('kind', ['bert', 'roberta'])
def test_flat_with_self_reproduces_the_model(kind):
    model = tiny(kind)
    ids, mask = batch()
    ref = embed(model, ids, mask).last_hidden_state
    inject(model, hierarchy='flat', include_self=True)
    out = embed(model, ids, mask).last_hidden_state
    valid = mask.bool()
    # float32 round-off, relative to the hidden states' size
    assert (out - ref)[valid].abs().max() < 1e-5 * ref[valid].abs().max()
    restore(model)
    exact = tiny(kind).double()
    ref = embed(exact, ids, mask).last_hidden_state
    inject(exact, hierarchy='flat', include_self=True)
    assert (embed(exact, ids, mask).last_hidden_state - ref)[valid].abs().max() < 1e-12


def test_restore_gives_back_the_original_outputs():
    model = tiny()
    ids, mask = batch()
    ref = embed(model, ids, mask).last_hidden_state
    inject(model, layers=[0, 2], hierarchy=(2, 2))
    changed = embed(model, ids, mask).last_hidden_state
    assert (changed - ref)[mask.bool()].abs().max() > 1e-3
    restore(model)
    assert torch.equal(embed(model, ids, mask).last_hidden_state, ref)
    assert model.config._attn_implementation == 'sdpa'
    assert not hasattr(model, '_hsa_zero_shot_state')


def test_padding_invariance():
    model = tiny()
    ids, mask = batch()
    inject(model, hierarchy=(2, 4), include_self=False)
    padded = embed(model, ids, mask).last_hidden_state
    for row in range(3):
        n = int(mask[row].sum())
        alone = embed(model, ids[row:row + 1, :n], mask[row:row + 1, :n]).last_hidden_state
        assert (alone[0] - padded[row, :n]).abs().max() < 1e-5
    # and without an attention mask at all
    n = int(mask[2].sum())
    bare = embed(model, ids[2:3, :n], None).last_hidden_state
    assert (bare[0] - padded[2, :n]).abs().max() < 1e-5


def test_only_chosen_layers_change():
    model = tiny()
    ids, mask = batch()
    ref = embed(model, ids, mask, output_hidden_states=True).hidden_states
    inject(model, layers=[2], hierarchy=(2, ))
    out = embed(model, ids, mask, output_hidden_states=True).hidden_states
    valid = mask.bool()
    for i in range(3):  # embeddings and the outputs of layers 0 and 1
        assert torch.equal(out[i][valid], ref[i][valid])
    assert (out[3] - ref[3])[valid].abs().max() > 1e-3


@pytest.mark.parametrize('include_self', [False, True])
def test_layer_equals_dense_reference(include_self):
    model = tiny(layers=1)
    ids, mask = batch()
    attention = attention_layers(model)[0]
    captured = {}
    attention.register_forward_hook(lambda m, a, out: captured.update(out=out[0]))
    attention.register_forward_pre_hook(lambda m, a: captured.update(x=a[0]))
    inject(model, hierarchy=(2, 3), include_self=include_self)
    embed(model, ids, mask)
    x, out = captured['x'], captured['out']
    valid = mask.bool()
    heads, d = 4, 8
    shape = (-1, heads, d)
    q = attention.query(x)[valid].view(shape).double()
    k = attention.key(x)[valid].view(shape).double()
    v = attention.value(x)[valid].view(shape).double()
    h = token_forest(valid, (2, 3), special_ends=True)
    expected = hsa_dense(q, k, v, h, include_self=include_self)
    assert torch.allclose(out[valid].view(shape).double(), expected, atol=1e-5)


def test_callable_hierarchy_and_errors():
    model = tiny()
    ids, mask = batch()
    inject(model, hierarchy=(2, 2), special_tokens='none')
    ref = embed(model, ids, mask).last_hidden_state
    calls = []

    def build(input_ids, valid):
        calls.append(input_ids.shape)
        return token_forest(valid, (2, 2))

    inject(model, hierarchy=build)
    out = embed(model, ids, mask).last_hidden_state
    assert calls and calls[0] == ids.shape
    assert (out - ref)[mask.bool()].abs().max() < 1e-6
    inject(model, hierarchy=lambda i, m: token_forest(m[:, :2], 'flat'))
    with pytest.raises(ValueError, match='leaves'):
        embed(model, ids, mask)
    restore(model)
    with pytest.raises(ValueError, match="'layers'"):
        inject(model, layers=[3])
    with pytest.raises(ValueError, match="'hierarchy'"):
        inject(model, hierarchy=(1, 2))
    with pytest.raises(ValueError, match="'special_tokens'"):
        inject(model, special_tokens='cls')
    with pytest.raises(TypeError, match="'model'"):
        inject(torch.nn.Linear(2, 2))


def gps_model():
    from torch_geometric.nn import GINConv, GPSConv
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 16))
    return torch.nn.ModuleList([GPSConv(16, GINConv(mlp), heads=4) for _ in range(2)]).eval()


def run_gps(model, x, edge_index, batch_vector):
    with torch.no_grad():
        for conv in model:
            x = conv(x, edge_index, batch_vector)
    return x


def test_pyg_gps_flat_is_exact_and_hierarchies_apply():
    from torch_geometric.utils import erdos_renyi_graph
    model = gps_model()
    sizes = [5, 9, 3]
    batch_vector = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    x = torch.randn(sum(sizes), 16)
    edge_index = erdos_renyi_graph(sum(sizes), 0.2)
    edge_index = edge_index[:, batch_vector[edge_index[0]] == batch_vector[edge_index[1]]]
    ref = run_gps(model, x, edge_index, batch_vector)
    inject(model, hierarchy='flat', include_self=True)
    assert isinstance(model[0].attn, HSAMultiheadAttention)
    assert torch.allclose(run_gps(model, x, edge_index, batch_vector), ref, atol=1e-5)
    # a hierarchy over the batch's nodes: pairs inside each graph
    parent, internal = [], sum(sizes)
    for n in sizes:
        pairs = (n + 1) // 2
        parent += [internal + i // 2 for i in range(n)]
        internal += pairs
    roots_start = internal
    pair_parent = []
    for g, n in enumerate(sizes):
        pair_parent += [roots_start + g] * ((n + 1) // 2)
    h = Hierarchy.from_parent(torch.tensor(parent + pair_parent + [-1] * 3), sum(sizes))
    set_hierarchy(model, h)
    hierarchical = run_gps(model, x, edge_index, batch_vector)
    assert (hierarchical - ref).abs().max() > 1e-3
    # the same hierarchy given as windows of 2 over each graph's nodes
    set_hierarchy(model, (2, ))
    assert torch.allclose(run_gps(model, x, edge_index, batch_vector), hierarchical,
                          atol=1e-5)
    restore(model)
    assert type(model[0].attn) is torch.nn.MultiheadAttention
    assert torch.allclose(run_gps(model, x, edge_index, batch_vector), ref)


def test_pyg_layers_and_bare_attention():
    model = gps_model()
    inject(model, layers=[1])
    assert isinstance(model[1].attn, HSAMultiheadAttention)
    assert type(model[0].attn) is torch.nn.MultiheadAttention
    keys = set(model.state_dict())
    assert keys == set(gps_model().state_dict())  # parameters untouched
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=False).eval()
    x = torch.randn(5, 2, 8)  # [length, batch, channels]
    with torch.no_grad():
        ref = mha(x, x, x)[0]
        converted = inject(mha, hierarchy='flat')
        assert converted is mha and isinstance(mha, HSAMultiheadAttention)
        assert torch.allclose(mha(x, x, x)[0], ref, atol=1e-5)
    with pytest.raises(ValueError, match='self-attention'):
        mha(x, x.clone(), x)
    restore(mha)
    assert type(mha) is torch.nn.MultiheadAttention and not hasattr(mha, 'hierarchy')
    fresh = HSAMultiheadAttention(8, 2, hierarchy=(2, ), batch_first=True)
    assert 'HSAMultiheadAttention(8, heads=2' in repr(fresh)
    assert fresh(x, x, x)[0].shape == x.shape


def test_attention_flops_against_the_paper():
    # the paper's Table 3, IMDB row: length 264, width 768, (2, 4, 8, 16) bottom-up
    flops = attention_flops(264, 768, heads=12, hierarchy=(2, 4, 8, 16))
    assert flops.softmax == 4 * 264**2 * 768 + 264**2 * 12
    assert round(flops.softmax / 1e6, 2) == 214.94
    assert abs(flops.hsa_families / 1e6 - 4.32) / 4.32 < 0.06
    assert flops.saved > 0.95
    # a flat hierarchy is one family of N: the family term is softmax's cost
    flat = attention_flops(50, 64, heads=4, hierarchy='flat')
    assert flat.hsa_families == flat.softmax and flat.sum_b2 == 2500
    with pytest.raises(ValueError, match="'length'"):
        attention_flops(0, 8)


@pytest.mark.parametrize('batch_first', [True, False])
def test_multihead_attention_returns_its_weights(batch_first):
    # regression: need_weights=True returned None after inject
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    x = torch.randn(3, 5, 8)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, 3:], padding[2, 1:] = True, True
    inputs = x if batch_first else x.transpose(0, 1)
    ref_out, ref_weights = attention(inputs, inputs, inputs, key_padding_mask=padding)
    inject(attention, hierarchy='flat')
    out, weights = attention(inputs, inputs, inputs, key_padding_mask=padding)
    valid = ~padding
    assert weights.shape == ref_weights.shape == (3, 5, 5)
    assert (weights - ref_weights)[valid].abs().max() < 1e-6
    _, per_head = attention(inputs, inputs, inputs, key_padding_mask=padding,
                            average_attn_weights=False)
    assert per_head.shape == (3, 2, 5, 5)
    assert torch.allclose(per_head.sum(-1)[valid.unsqueeze(1).expand(-1, 2, -1)],
                          torch.ones(1))
    assert torch.all(per_head[padding.unsqueeze(1).expand(-1, 2, -1)] == 0)
    inject(attention, hierarchy=(2, ))
    _, windowed = attention(inputs, inputs, inputs, key_padding_mask=padding,
                            average_attn_weights=False)
    assert (windowed - per_head).abs().max() > 1e-3      # windows change the weights
    assert torch.allclose(windowed.sum(-1)[valid.unsqueeze(1).expand(-1, 2, -1)],
                          torch.ones(1))
    assert attention(inputs, inputs, inputs, need_weights=False)[1] is None


def test_huggingface_output_attentions_returns_every_layer():
    model = tiny(layers=3)
    model.set_attn_implementation('eager')
    ids, mask = batch()
    ref = embed(model, ids, mask, output_attentions=True)
    inject(model, layers=[1], hierarchy='flat')
    out = embed(model, ids, mask, output_attentions=True)
    assert len(out.attentions) == 3
    valid = mask.bool()
    for mine, theirs in zip(out.attentions, ref.attentions):
        assert (mine - theirs).permute(0, 2, 1, 3)[valid].abs().max() < 1e-5
    restore(model)
