import copy

import pytest
import torch
from torch_geometric.nn import GINConv, GPSConv
from torch_geometric.utils import erdos_renyi_graph

from hsa_geo import Hierarchy
from hsa_geo.nn import HSAGPSConv


def _graph_batch(sizes, channels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xs, edges, batch, offset = [], [], [], 0
    for g, n in enumerate(sizes):
        xs.append(torch.randn(n, channels, generator=gen))
        torch.manual_seed(seed + g)
        edges.append(erdos_renyi_graph(n, 0.3) + offset)
        batch.append(torch.full((n, ), g))
        offset += n
    return torch.cat(xs), torch.cat(edges, 1), torch.cat(batch)


def _copy_attention(hsa_gps: HSAGPSConv, gps: GPSConv):
    c = hsa_gps.channels
    w, b = gps.attn.in_proj_weight, gps.attn.in_proj_bias
    with torch.no_grad():
        for i, lin in enumerate((hsa_gps.attn.lin_query, hsa_gps.attn.lin_key,
                                 hsa_gps.attn.lin_value)):
            lin['_leaf'].weight.copy_(w[i * c:(i + 1) * c])
            lin['_leaf'].bias.copy_(b[i * c:(i + 1) * c])
        hsa_gps.attn.lin_out.weight.copy_(gps.attn.out_proj.weight)
        hsa_gps.attn.lin_out.bias.copy_(gps.attn.out_proj.bias)
    hsa_gps.mlp.load_state_dict(gps.mlp.state_dict())
    for name in ('norm1', 'norm2', 'norm3'):
        if getattr(gps, name) is not None:
            getattr(hsa_gps, name).load_state_dict(getattr(gps, name).state_dict())


@pytest.mark.parametrize('norm', ['batch_norm', 'layer_norm', None])
def test_flat_hsagps_equals_gpsconv_multihead(norm):
    channels, heads = 16, 4
    local = GINConv(torch.nn.Sequential(torch.nn.Linear(channels, channels),
                                        torch.nn.ReLU(), torch.nn.Linear(channels, channels)))
    gps = GPSConv(channels, copy.deepcopy(local), heads=heads, attn_type='multihead',
                  norm=norm)
    ours = HSAGPSConv(channels, copy.deepcopy(local), heads=heads, norm=norm)
    ours.conv.load_state_dict(gps.conv.state_dict())
    _copy_attention(ours, gps)
    gps.eval()
    ours.eval()
    x, edge_index, batch = _graph_batch([5, 9, 3], channels)
    expected = gps(x, edge_index, batch)
    assert torch.allclose(ours(x, edge_index, batch), expected, atol=1e-5)
    # the same with an explicitly given flat hierarchy
    h = Hierarchy.from_batch(batch, x.size(0))
    assert torch.allclose(ours(x, edge_index, batch, hierarchy=h), expected, atol=1e-5)


def test_hierarchical_attention_trains():
    channels = 8
    x, edge_index, batch = _graph_batch([6, 7], channels)
    # two levels: groups of 3 nodes under each graph's root
    n = x.size(0)
    groups = torch.arange(n) // 3
    num_groups = int(groups.max()) + 1
    group_graph = torch.zeros(num_groups, dtype=torch.long)
    group_graph[groups] = batch
    parent = torch.cat([n + groups, n + num_groups + group_graph, torch.full((2, ), -1)])
    h = Hierarchy.from_parent(parent, n)
    layer = HSAGPSConv(channels, GINConv(torch.nn.Linear(channels, channels)), heads=2,
                       attn_kwargs=dict(include_self=False, qk_norm=True))
    out = layer(x, edge_index, batch, hierarchy=h)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in layer.parameters())
    assert repr(layer).startswith('HSAGPSConv(8, conv=GINConv')


@pytest.mark.parametrize('conv', [None, GINConv(torch.nn.Linear(8, 8))])
def test_every_parameter_gets_a_gradient(conv):
    # a parameter left without a gradient (a norm for an absent local layer)
    # stalls DistributedDataParallel's reduction of its bucket
    x, edge_index, batch = _graph_batch([5, 7], 8)
    layer = HSAGPSConv(8, conv, heads=2, norm='layer_norm', norm_kwargs={'mode': 'node'})
    layer(x, edge_index, batch).sum().backward()
    assert [n for n, p in layer.named_parameters() if p.grad is None] == []
    assert (layer.norm1 is None) == (conv is None)
