r"""HSA layers inside PyG pipelines: the loader contract, PyG's layer-test
recipes (reset, state_dict, lazy init), HeteroConv / to_hetero, explainers,
and torch.compile without graph breaks or recompiles."""
import copy
import pickle

import pytest
import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.nn import GINConv, HeteroConv, SAGEConv, to_hetero

from hsa_geo import Hierarchy, HSAConv
from hsa_geo import compiled as op
from hsa_geo.loader import HierarchyLoader
from hsa_geo.nn import HSAEncoderLayer, HSAGPSConv, HTEPredictor, root_pool
from hsa_geo.testing import CompileCounter, hetero_forest


def _tree(seed, channels=8):
    r"""A random tree as the HeteroData a builder writes, with a graph label."""
    data = hetero_forest(seed, channels, pos_channels=4)
    data.y = torch.randn(1, 1, generator=torch.Generator().manual_seed(seed))
    return data


def _every_leaf_has_a_parent(data):
    return data['leaf', 'in', 'node'].edge_index.size(1) == data['leaf'].num_nodes


TREES = [t for t in map(_tree, range(30)) if _every_leaf_has_a_parent(t)][:11]


# ---------------------------------------------------------------- the loader
def test_loader_batches_carry_their_compiled_hierarchy():
    loader = HierarchyLoader(TREES, batch_size=4)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert isinstance(batch.hierarchy, Hierarchy)
        assert batch.hierarchy == Hierarchy.from_hetero(batch)
        assert batch.hierarchy.num_roots == batch.num_graphs
        assert torch.equal(batch.hierarchy.leaf_tree, batch['leaf'].batch)
    # batch.to(device) moves the hierarchy with the tensors (PyG applies
    # Hierarchy.to(device, non_blocking=...) to it)
    calls = []
    original = Hierarchy.to

    def recording_to(self, device, non_blocking=False):
        calls.append((device, non_blocking))
        return original(self, device, non_blocking)

    Hierarchy.to = recording_to
    try:
        moved = batches[0].to('cpu', non_blocking=True)
    finally:
        Hierarchy.to = original
    assert calls == [('cpu', True)]
    assert moved.hierarchy is batches[0].hierarchy  # already there: no copy


def test_loader_in_worker_processes_and_pickling():
    batch = next(iter(HierarchyLoader(TREES, batch_size=5, num_workers=2)))
    h = batch.hierarchy
    assert h == Hierarchy.from_hetero(batch)
    assert Hierarchy.of(h.parent) is h  # registered for the compiled operator
    copied = pickle.loads(pickle.dumps(h))
    assert copied == h and Hierarchy.of(copied.parent) is copied


def test_loader_refuses_graphs_without_a_hierarchy():
    graphs = [Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]))]
    with pytest.raises(TypeError, match='hierarchies stored as HeteroData'):
        next(iter(HierarchyLoader(graphs)))
    with pytest.raises(TypeError, match="'relation'"):
        HierarchyLoader(TREES, relation='')


# ------------------------------------------------------- PyG's layer recipes
def _layers():
    return {
        'HSAConv': (lambda: HSAConv(8, 4, heads=2, pos_channels=4),
                    lambda m, b: m(b['leaf'].x, b.hierarchy, pos=_pos(b))),
        'HSAGPSConv': (lambda: HSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2),
                       lambda m, b: m(b['leaf'].x, b['leaf', 'in', 'node'].edge_index[:, :0],
                                      b['leaf'].batch, hierarchy=b.hierarchy)),
        'HSAEncoderLayer': (lambda: HSAEncoderLayer(8, 8, heads=2),
                            lambda m, b: m(b['leaf'].x, b.hierarchy)),
    }


def _pos(batch):
    return {'leaf': batch['leaf'].hsa_pos, 'node': batch['node'].hsa_pos}


@pytest.mark.parametrize('name', list(_layers()))
def test_reset_parameters_and_state_dict_round_trip(name):
    build, run = _layers()[name]
    batch = next(iter(HierarchyLoader(TREES, batch_size=4)))
    torch.manual_seed(0)
    layer = build().eval()
    out = run(layer, batch)
    other = build().eval()
    other.load_state_dict(copy.deepcopy(layer.state_dict()))
    assert torch.equal(run(other, batch), out)
    other.reset_parameters()
    assert not torch.allclose(run(other, batch), out)


def test_lazy_in_channels():
    batch = next(iter(HierarchyLoader(TREES, batch_size=4)))
    conv = HSAConv(-1, 4, heads=2)
    assert conv(batch['leaf'].x, batch.hierarchy).shape == (batch['leaf'].num_nodes, 8)
    assert conv.lin_query['_leaf'].weight.shape == (8, 8)


def test_gps_swap_is_one_line():
    local = GINConv(torch.nn.Linear(8, 8))
    layer = HSAGPSConv(8, local, heads=2, attn_type='multihead',
                       attn_kwargs={'dropout': 0.1})
    assert layer.attn.dropout == 0.1
    with pytest.raises(ValueError, match="'attn_type'"):
        HSAGPSConv(8, local, heads=2, attn_type='performer')


# ------------------------------------------------------ HeteroConv, to_hetero
def _hetero_graph(num_papers=9, num_authors=5):
    data = HeteroData()
    data['paper'].x = torch.randn(num_papers, 8)
    data['author'].x = torch.randn(num_authors, 8)
    data['paper', 'cites', 'paper'].edge_index = torch.randint(0, num_papers, (2, 20))
    data['author', 'writes', 'paper'].edge_index = torch.stack([
        torch.randint(0, num_authors, (12, )), torch.randint(0, num_papers, (12, ))])
    data['paper', 'rev_writes', 'author'].edge_index = \
        data['author', 'writes', 'paper'].edge_index.flip(0)
    hierarchies = {  # one hierarchy per node type: papers by topic, authors flat
        'paper': Hierarchy.from_parent(torch.tensor([9, 9, 9, 10, 10, 10, 11, 11, 11,
                                                     12, 12, 12, -1]), 9),
        'author': Hierarchy.from_batch(None, num_authors),
    }
    return data, hierarchies


def test_inside_heteroconv():
    data, hierarchies = _hetero_graph()
    hsa = HSAConv(8, 4, heads=2)
    conv = HeteroConv({
        ('paper', 'cites', 'paper'): SAGEConv(8, 8),
        ('paper', 'hsa', 'paper'): hsa,
    }, aggr='sum')
    edge_index_dict = dict(data.edge_index_dict)
    edge_index_dict['paper', 'hsa', 'paper'] = hierarchies['paper']
    out = conv(data.x_dict, edge_index_dict)
    expected = (conv.convs[('paper', 'cites', 'paper')](data['paper'].x,
                                                  edge_index_dict['paper', 'cites', 'paper'])
                + hsa(data['paper'].x, hierarchies['paper']))
    assert torch.allclose(out['paper'], expected, atol=1e-6)


class _HomogeneousModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.local = SAGEConv((-1, -1), 8)
        self.attn = HSAConv(-1, 4, heads=2)

    def forward(self, x, edge_index, hierarchy):
        x = self.local(x, edge_index).relu()
        return self.attn(x, hierarchy)


def test_inside_to_hetero():
    data, hierarchies = _hetero_graph()
    model = to_hetero(_HomogeneousModel(), data.metadata(), aggr='sum')
    out = model(data.x_dict, data.edge_index_dict, hierarchies)
    assert out['paper'].shape == (9, 8) and out['author'].shape == (5, 8)
    # the attention of each node type is HSA over that type's hierarchy
    local = {t: torch.zeros(n, 8) for t, n in (('paper', 9), ('author', 5))}
    for (src, rel, dst), edge_index in data.edge_index_dict.items():
        layer = getattr(model.local, f'{src}__{rel}__{dst}')
        local[dst] = local[dst] + layer((data[src].x, data[dst].x), edge_index)
    for t in ('paper', 'author'):
        expected = getattr(model.attn, t)(local[t].relu(), hierarchies[t])
        assert torch.allclose(out[t], expected, atol=1e-6)


# ------------------------------------------------------------------ explainers
class _Readout(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = HSAConv(8, 4, heads=2)
        self.conv2 = HSAConv(8, 1, heads=1)

    def forward(self, x, edge_index, hierarchy):  # edge_index: explained pairs
        return root_pool(self.conv2(self.conv1(x, hierarchy).relu(), hierarchy), hierarchy)


def test_attention_explainer_collects_hsa_attention():
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import AttentionExplainer
    batch = next(iter(HierarchyLoader(TREES, batch_size=3)))
    h, x = batch.hierarchy, batch['leaf'].x
    model = _Readout().eval()
    explainer = Explainer(model, AttentionExplainer(reduce='max'), explanation_type='model',
                          edge_mask_type='object',
                          model_config=dict(mode='regression', task_level='graph',
                                            return_type='raw'))
    explanation = explainer(x, h.sibling_index, hierarchy=h)
    _, (_, alpha1) = model.conv1(x, h, return_attention_weights=True)
    hidden = model.conv1(x, h).relu()
    _, (_, alpha2) = model.conv2(hidden, h, return_attention_weights=True)
    expected = torch.stack([alpha1.max(-1).values, alpha2.max(-1).values], -1).max(-1).values
    assert explanation.edge_mask.shape == (h.num_pairs, )
    assert torch.allclose(explanation.edge_mask, expected, atol=1e-6)
    # with no explainer listening, no weights are computed and hooks are gone
    assert not model.conv1.explain_tap.listening


class _Hybrid(torch.nn.Module):
    r"""Two GPS layers with HSA over flat families: ``local`` is the local
    layer's class (GIN has no attention, GAT has)."""
    def __init__(self, local):
        super().__init__()
        from torch_geometric.nn import GATConv
        make = (lambda: GINConv(torch.nn.Linear(8, 8))) if local == 'gin' else \
            (lambda: GATConv(8, 4, heads=2))
        self.layers = torch.nn.ModuleList([HSAGPSConv(8, make(), heads=2, norm=None)
                                           for _ in range(2)])

    def forward(self, x, edge_index, batch):
        for layer in self.layers:
            x = layer(x, edge_index, batch=batch)
        return x.sum(-1, keepdim=True)


def _explain_graph_edges(model, x, edge_index, batch):
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import AttentionExplainer
    explainer = Explainer(model, AttentionExplainer(reduce='max'), explanation_type='model',
                          edge_mask_type='object',
                          model_config=dict(mode='regression', task_level='graph',
                                            return_type='raw'))
    return explainer(x, edge_index, batch=batch).edge_mask


def test_attention_explainer_over_graph_edges_hears_only_the_local_layers():
    torch.manual_seed(0)
    x = torch.randn(7, 8)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 0, 4, 5, 6]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    # a local layer without attention: HSA's sibling pairs are not graph edges
    with pytest.raises(ValueError, match='Could not collect any attention'):
        _explain_graph_edges(_Hybrid('gin').eval(), x, edge_index, batch)
    # a local GAT: the mask is GAT's alone, as with the taps switched off
    model = _Hybrid('gat').eval()
    mask = _explain_graph_edges(model, x, edge_index, batch)
    for layer in model.layers:
        layer.attn.explain_tap.explain = False
    assert torch.equal(mask, _explain_graph_edges(model, x, edge_index, batch))
    for layer in model.layers:
        assert not layer.attn.explain_tap.listening and layer.attn.explain_tap._explained is None


def test_attention_explainer_refuses_node_level_over_sibling_pairs():
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import AttentionExplainer
    batch = next(iter(HierarchyLoader(TREES, batch_size=3)))
    h, x = batch.hierarchy, batch['leaf'].x
    explainer = Explainer(_Readout().eval(), AttentionExplainer(), explanation_type='model',
                          edge_mask_type='object',
                          model_config=dict(mode='regression', task_level='node',
                                            return_type='raw'))
    with pytest.raises(ValueError, match="node-level explanation of HSA over 'edge_index'"):
        explainer(x, h.sibling_index, hierarchy=h, index=0)


def test_gnn_explainer_node_mask():
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import GNNExplainer
    batch = next(iter(HierarchyLoader(TREES, batch_size=3)))
    h, x = batch.hierarchy, batch['leaf'].x
    explainer = Explainer(_Readout(), GNNExplainer(epochs=3), explanation_type='model',
                          node_mask_type='attributes', edge_mask_type=None,
                          model_config=dict(mode='regression', task_level='graph',
                                            return_type='raw'))
    explanation = explainer(x, h.sibling_index, hierarchy=h)
    assert explanation.node_mask.shape == x.shape
    assert torch.isfinite(explanation.node_mask).all()
    assert explanation.node_mask.std() > 0  # trained, not left at its start


# --------------------------------------------------------------------- compile
def test_compile_without_graph_breaks():
    batch = next(iter(HierarchyLoader(TREES, batch_size=4)))
    h, x = batch.hierarchy, batch['leaf'].x
    conv = HSAConv(8, 4, heads=2, pos_channels=4)
    assert torch._dynamo.explain(conv)(x, h, pos=_pos(batch)).graph_break_count == 0
    gps = HSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2)
    edges = torch.randint(0, x.size(0), (2, 30))
    explained = torch._dynamo.explain(gps)(x, edges, batch['leaf'].batch)  # no hierarchy
    assert explained.graph_break_count == 0
    layer = HSAEncoderLayer(8, 8, heads=2)
    assert torch._dynamo.explain(layer)(x, h).graph_break_count == 0


def _compiled_run(model, batches, step):
    r"""Eager and compiled (dynamic shapes) side by side: equal values and
    gradients on every batch; returns the number of compilations."""
    counter = CompileCounter()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counter, dynamic=True, fullgraph=True)
    for batch in batches:
        model.zero_grad()
        expected = step(model, batch)
        expected.pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        out = step(compiled, batch)
        out.pow(2).sum().backward()
        assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4)
        for p, g in zip(model.parameters(), grads):
            assert torch.allclose(p.grad, g, atol=1e-4, rtol=1e-4)
    return counter.count


@pytest.mark.slow
def test_compile_random_forests_once():
    batches = list(HierarchyLoader(TREES, batch_size=3, shuffle=True))
    batches += list(HierarchyLoader(TREES, batch_size=5))
    model = HSAEncoderLayer(8, 8, heads=2, pos_channels=4)
    before = dict(op.STATS)
    count = _compiled_run(model, batches,
                          lambda m, b: root_pool(m(b['leaf'].x, b.hierarchy, pos=_pos(b)),
                                                 b.hierarchy))
    assert count == 1  # target: at most 2
    assert op.STATS == before  # every hierarchy found, every tape entry kept


@pytest.mark.slow
def test_compile_freesolv_junction_trees_and_octrees_at_most_twice():
    pytest.importorskip('rdkit')
    trimesh = pytest.importorskip('trimesh')
    from ogb.utils import smiles2graph

    from hsa_geo.datasets import read_mesh, read_molecules
    from hsa_geo.nn import HSAPointTransformer
    from hsa_geo.transforms import MoleculeHierarchy, VoxelHierarchy

    build = MoleculeHierarchy()
    molecules = []
    for smiles in read_molecules('ogbg-molfreesolv')['smiles'][:140]:
        graph = smiles2graph(smiles)
        molecules.append(build(Data(x=torch.from_numpy(graph['node_feat']).float(),
                                    edge_index=torch.from_numpy(graph['edge_index']),
                                    smiles=smiles)))
    torch.manual_seed(0)
    batches = [b for _, b in zip(range(20), HierarchyLoader(molecules, batch_size=7,
                                                           shuffle=True))]
    assert len({b.hierarchy.num_nodes for b in batches}) > 10  # shapes do vary
    model = HTEPredictor(9, 16, 1, heads=2, num_layers=2)
    count = _compiled_run(model, batches, lambda m, b: m(b['atom'].x, b.hierarchy))
    assert count == 1  # target: at most 2

    octree = VoxelHierarchy(depth=3)
    clouds = []
    for i in range(40):
        mesh = read_mesh(('airplane', 'ant', 'nut')[i % 3])
        surface = trimesh.Trimesh(mesh.pos.numpy(), mesh.face.t().numpy(), process=False)
        xyz, _ = trimesh.sample.sample_surface(surface, 40 + 7 * (i % 5), seed=i)
        clouds.append(octree(Data(pos=torch.as_tensor(xyz, dtype=torch.float))))
    batches = [b for _, b in zip(range(20), HierarchyLoader(clouds, batch_size=4,
                                                           shuffle=True))]
    model = HSAPointTransformer(0, 16, 3, num_layers=2, heads=2)
    count = _compiled_run(model, batches,
                          lambda m, b: m(None, b['point'].pos, b.hierarchy, b.hsa_pos_dict))
    assert count == 1  # target: at most 2


def test_attention_weights_of_the_flat_gps_path_and_lone_leaves():
    import pickle

    from hsa_geo.functional import FlatFamilies, LoneLeaves
    batch = torch.tensor([0, 0, 1, 1, 1])
    x = torch.randn(5, 8)
    gps = HSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2)
    _, (edges, alpha) = gps.attn(x, FlatFamilies(batch), return_attention_weights=True)
    _, (expected_edges, expected) = gps.attn(x, Hierarchy.from_batch(batch, 5),
                                             return_attention_weights=True)
    assert torch.equal(edges, expected_edges) and torch.allclose(alpha, expected)
    lone = LoneLeaves(Hierarchy.from_batch(batch, 5))
    assert pickle.loads(pickle.dumps(lone)).num_leaves == 5
    with pytest.raises(ValueError, match='no sibling pairs'):
        HSAConv(8, 4)(x, lone, return_attention_weights=True)
