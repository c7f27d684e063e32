r"""Builders move every input attribute to the store PyG's own rules name."""
import warnings

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric import EdgeIndex
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.transforms import GraphHierarchy, MoleculeHierarchy, SequenceHierarchy, VoxelHierarchy

BUILDERS = {
    'graph': (GraphHierarchy(), 'node', 'to'),
    'spectral': (GraphHierarchy(method='spectral', branching=(2, 2)), 'node', 'to'),
    'sequence': (SequenceHierarchy((2, 2)), 'token', 'to'),
    'voxel': (VoxelHierarchy(2), 'point', 'to'),
    'molecule': (MoleculeHierarchy(pos_dim=4, use_smiles=False), 'atom', 'bond'),
}


def _graph(num_nodes=6, num_edges=8):
    gen = torch.Generator().manual_seed(0)
    ring = torch.arange(num_nodes)
    edge_index = torch.stack([ring, (ring + 1) % num_nodes])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)[:, :num_edges]
    return Data(x=torch.randn(num_nodes, 3, generator=gen), edge_index=edge_index,
                edge_type=torch.arange(edge_index.size(1)),
                edge_attr=torch.randn(edge_index.size(1), 2, generator=gen),
                y=torch.arange(num_nodes), pos=torch.rand(num_nodes, 3, generator=gen),
                graph_y=torch.tensor([[1.5]]), name='g')


@pytest.mark.parametrize('builder,leaf,relation', BUILDERS.values(), ids=list(BUILDERS))
@pytest.mark.parametrize('num_edges', [12, 6], ids=['E!=N', 'E==N'])
def test_node_edge_and_graph_attributes_land_in_their_stores(builder, leaf, relation,
                                                               num_edges):
    # regression: edge_type went to the global store (or to the node store
    # when E == N), and a node-level y went to the global store
    data = _graph(num_edges=num_edges)
    out = builder(data)
    edges = out[leaf, relation, leaf]
    assert torch.equal(edges.edge_index, data.edge_index)
    assert torch.equal(edges.edge_type, data.edge_type)
    assert torch.equal(edges.edge_attr, data.edge_attr)
    assert torch.equal(out[leaf].y, data.y) and torch.equal(out[leaf].x, data.x)
    assert 'y' not in out.to_dict() and 'edge_type' not in out[leaf].to_dict()
    assert torch.equal(out.graph_y, data.graph_y) and out.name == 'g'


def test_node_labels_work_with_pyg_node_recipes():
    out = GraphHierarchy()(_graph())
    out = T.RandomNodeSplit(num_val=1, num_test=1)(out)
    assert int(out['node'].train_mask.sum()) == 4


def test_single_node_graph_keeps_its_graph_label_global():
    out = MoleculeHierarchy(pos_dim=4)(Data(x=torch.randn(1, 3), y=torch.tensor([[0.5]]),
                                            edge_index=torch.empty(2, 0, dtype=torch.long)))
    assert torch.equal(out.y, torch.tensor([[0.5]])) and 'y' not in out['atom'].to_dict()


def test_graph_hierarchy_reads_adj_t_and_edge_index_alike():
    # regression: after T.ToSparseTensor the edges were ignored (one
    # community per node)
    data = Data(num_nodes=20, edge_index=torch.cat([
        torch.combinations(torch.arange(10)).t(),
        torch.combinations(torch.arange(10, 20)).t()], 1))
    data.edge_index = torch.cat([data.edge_index, data.edge_index.flip(0)], 1)
    plain = GraphHierarchy(num_levels=1)(data)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch's sparse CSR 'beta' warning
        sparse = GraphHierarchy(num_levels=1)(T.ToSparseTensor()(data.clone()))
    indexed = GraphHierarchy(num_levels=1)(
        Data(num_nodes=20, edge_index=EdgeIndex(data.edge_index, sparse_size=(20, 20))))
    assert plain['community1'].num_nodes == 2
    for other in (sparse, indexed):
        assert torch.equal(other['node', 'in', 'community1'].edge_index,
                           plain['node', 'in', 'community1'].edge_index)
    assert 'adj_t' in sparse['node', 'to', 'node']


@pytest.mark.parametrize('method', ['louvain', 'spectral'])
def test_single_node_graph_gets_a_valid_hierarchy(method):
    out = GraphHierarchy(method=method)(Data(num_nodes=1))
    h = Hierarchy.from_hetero(out)
    assert h.num_leaves == 1 and h.num_roots == 1
