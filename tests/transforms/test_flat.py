import pytest
import torch
from ogb.utils import smiles2graph
from torch_geometric.data import Data, HeteroData
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy
from hsa_geo.transforms import (
    FlatHierarchy,
    MoleculeHierarchy,
    MultiModalHierarchy,
    TextHierarchy,
    grid_positions,
)

TEXT = 'Hello brave new world. It is here!\n\nA second paragraph follows.'


def _molecule(smiles='CC(=O)Oc1ccccc1C(=O)O', name='aspirin'):
    g = smiles2graph(smiles)
    return Data(x=torch.from_numpy(g['node_feat']), edge_index=torch.from_numpy(g['edge_index']),
                edge_attr=torch.from_numpy(g['edge_feat']), num_nodes=g['num_nodes'],
                name=name, y=torch.tensor([2.0]))


def test_text_leaves_under_one_root():
    tree = TextHierarchy(pos_dim=8)(Data(text=TEXT, y=torch.tensor([1])))
    flat = FlatHierarchy(pos_dim=8)(tree)
    n = tree['token'].num_nodes
    assert set(flat.node_types) == {'token', 'root'}
    assert flat['token'].num_nodes == n and flat['root'].num_nodes == 1
    assert flat['token', 'in', 'root'].edge_index.tolist() == [list(range(n)), [0] * n]
    assert torch.equal(flat['token'].char_span, tree['token'].char_span)
    assert torch.equal(flat['token'].hsa_pos, grid_positions(torch.arange(n), 8))
    assert flat.y.tolist() == [1]
    h = Hierarchy.from_hetero(flat)
    assert h.num_leaves == n and h.depth == 1 and h.max_branching == n


def test_truncation_keeps_a_prefix():
    tree = TextHierarchy(pos_dim=8)(Data(text=TEXT))
    flat = FlatHierarchy(pos_dim=8, max_leaves=5)(tree)
    assert flat['token'].num_nodes == 5
    assert torch.equal(flat['token'].char_span, tree['token'].char_span[:5])
    assert FlatHierarchy(8, max_leaves=10_000)(tree)['token'].num_nodes == \
        tree['token'].num_nodes


def test_multimodal_concatenates_leaf_types_and_cuts_bonds():
    transform = MultiModalHierarchy({
        'mol': MoleculeHierarchy(pos_dim=8),
        'name': lambda d: TextHierarchy(pos_dim=8)(Data(text=d.name)),
    }, pos_dim=8)
    nested = transform(_molecule())
    atoms, tokens = nested['mol_atom'].num_nodes, nested['name_token'].num_nodes
    flat = FlatHierarchy(pos_dim=8)(nested)
    assert set(flat.node_types) == {'mol_atom', 'name_token', 'root'}
    # flat order: atoms first, then tokens
    assert torch.equal(flat['name_token'].hsa_pos,
                       grid_positions(torch.arange(atoms, atoms + tokens), 8))
    assert torch.equal(flat['mol_atom'].x, nested['mol_atom'].x)
    bonds = flat['mol_atom', 'bond', 'mol_atom']
    assert bonds.edge_index.size(1) == nested['mol_atom', 'bond', 'mol_atom'].edge_index.size(1)
    cut = FlatHierarchy(pos_dim=8, max_leaves=4)(nested)
    assert 'name_token' not in cut.node_types and cut['mol_atom'].num_nodes == 4
    kept = cut['mol_atom', 'bond', 'mol_atom']
    assert bool((kept.edge_index < 4).all())
    assert kept.edge_attr.size(0) == kept.edge_index.size(1) > 0
    # batches into a forest with one flat family per sample
    batch = next(iter(DataLoader([flat, flat], batch_size=2)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 2 and h.num_leaves == 2 * (atoms + tokens)


def test_errors():
    with pytest.raises(ValueError, match="'max_leaves'"):
        FlatHierarchy(8, max_leaves=0)
    data = HeteroData()
    data['a'].num_nodes = 3
    with pytest.raises(ValueError, match="no edge type"):
        FlatHierarchy(8)(data)
