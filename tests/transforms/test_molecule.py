import pytest
import torch
from ogb.utils import smiles2graph
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy, HSAConv
from hsa_geo.transforms import MoleculeHierarchy, molecule_clusters

SMILES = ['c1ccccc1O', 'CCO', 'C', 'c1ccc2ccccc2c1', 'CC(=O)Oc1ccccc1C(=O)O',
          'C1CC2CCC1C2', 'O=C(O)CCl', '[Na+].[Cl-]']


def _data(smiles, with_smiles=False):
    g = smiles2graph(smiles)
    data = Data(x=torch.from_numpy(g['node_feat']), edge_index=torch.from_numpy(g['edge_index']),
                edge_attr=torch.from_numpy(g['edge_feat']), y=torch.tensor([[1.0]]),
                num_nodes=g['num_nodes'])
    if with_smiles:
        data.smiles = smiles
    return data


@pytest.mark.parametrize('with_smiles', [False, True])  # graph rule / rdkit's
@pytest.mark.parametrize('smiles', SMILES + ['N'])
def test_every_atom_has_one_cluster_and_the_tree_compiles(smiles, with_smiles):
    out = MoleculeHierarchy(pos_dim=8)(_data(smiles, with_smiles))
    n = out['atom'].num_nodes
    child, cluster = out['atom', 'in', 'cluster'].edge_index
    assert child.tolist() == list(range(n))
    assert torch.bincount(cluster).min() >= 1            # no empty cluster
    assert out['atom'].x.shape[0] == n and out.y.shape == (1, 1)
    assert out['atom', 'bond', 'atom'].edge_attr is not None
    h = Hierarchy.from_hetero(out)
    assert h.num_roots == 1 and h.num_leaves == n
    for t in ('atom', 'cluster', 'molecule'):
        assert out[t].hsa_pos.shape == (out[t].num_nodes, 8)


def test_clusters_of_known_molecules():
    benzene_ring = molecule_clusters(_data('c1ccccc1O').edge_index, 7)
    assert sorted(map(len, benzene_ring)) == [2, 6]       # the ring and the C-O bond
    naphthalene = molecule_clusters(_data('c1ccc2ccccc2c1').edge_index, 10)
    assert sorted(map(len, naphthalene)) == [6, 6]       # two fused rings share 2 atoms
    bridged = molecule_clusters(_data('C1CC2CCC1C2').edge_index, 7)
    assert len(bridged) == 1 and len(bridged[0]) == 7    # norbornane: one bridged system
    out = MoleculeHierarchy()(_data('c1ccccc1O'))
    assert out['cluster'].is_ring.tolist() == [True, False]
    assert out['cluster'].size.tolist() == [6, 1]        # the ring keeps the shared atom


@pytest.mark.parametrize('smiles', SMILES[:7])
def test_rdkit_and_graph_rules_agree_on_rings(smiles):
    pytest.importorskip('rdkit')
    graph = molecule_clusters(_data(smiles).edge_index, _data(smiles).num_nodes)
    chem = molecule_clusters(_data(smiles).edge_index, _data(smiles).num_nodes, smiles)
    assert sorted(c for c in graph if len(c) > 2) == sorted(c for c in chem if len(c) > 2)


def test_batches_and_runs_hsaconv():
    data = [MoleculeHierarchy(pos_dim=4)(_data(s)) for s in SMILES]
    batch = next(iter(DataLoader(data, batch_size=len(data))))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == len(SMILES)
    conv = HSAConv(9, 4, heads=2, pos_channels=4)
    pos = {t: batch[t].hsa_pos for t in ('atom', 'cluster', 'molecule')}
    out = conv(batch['atom'].x.float(), h, pos=pos)
    assert out.shape == (batch['atom'].num_nodes, 8) and torch.isfinite(out).all()


def test_bad_input():
    with pytest.raises(ValueError, match='no atoms'):
        MoleculeHierarchy()(Data(x=torch.zeros(0, 9), edge_index=torch.zeros(2, 0).long()))


def test_atom_positions_inside_clusters():
    data = _data('c1ccccc1CCO')
    grid = MoleculeHierarchy(pos_dim=4)(data)
    graph = MoleculeHierarchy(pos_dim=4, atom_pos='laplacian')(data)
    unordered = MoleculeHierarchy(pos_dim=4, atom_pos='none')(data)
    assert torch.equal(unordered['atom'].hsa_pos, torch.zeros(9, 4))
    assert not torch.equal(grid['atom'].hsa_pos, graph['atom'].hsa_pos)
    # the ring's atoms get the Laplacian eigenvectors of the ring's own bonds
    owner = graph['atom', 'in', 'cluster'].edge_index[1]
    ring = (owner == owner[0]).nonzero().view(-1)
    assert ring.tolist() == [0, 1, 2, 3, 4, 5]
    adj = torch.zeros(6, 6, dtype=torch.float64)
    edges = data.edge_index[:, (data.edge_index < 6).all(0)]
    adj[edges[0], edges[1]] = 1
    lap = torch.eye(6, dtype=torch.float64) - adj / 2               # every ring atom: degree 2
    eigenvalues = torch.linalg.eigvalsh(lap)[1:5]                   # the non-trivial ones
    pos = graph['atom'].hsa_pos[ring].double()
    # (a cycle's eigenvalues come in pairs, so compare eigenspaces, not bases)
    assert torch.allclose(lap @ pos, pos * eigenvalues, atol=1e-5)
    assert torch.allclose(pos.T @ pos, torch.eye(4, dtype=torch.float64), atol=1e-5)
    # a cluster of one atom has no positions; clusters keep theirs in every mode
    assert torch.equal(graph['atom'].hsa_pos[8], torch.zeros(4))
    assert torch.equal(graph['cluster'].hsa_pos, grid['cluster'].hsa_pos)
    with pytest.raises(ValueError, match="'atom_pos' must be one of"):
        MoleculeHierarchy(atom_pos='order')
