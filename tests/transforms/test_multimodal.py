import pytest
import torch
from ogb.utils import smiles2graph
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy, HSAConv
from hsa_geo.transforms import MoleculeHierarchy, MultiModalHierarchy, TextHierarchy, nest


def _sample(smiles, name, y):
    g = smiles2graph(smiles)
    return Data(x=torch.from_numpy(g['node_feat']).float(),
                edge_index=torch.from_numpy(g['edge_index']), num_nodes=g['num_nodes'],
                name=name, y=torch.tensor([y]))


TRANSFORM = MultiModalHierarchy({
    'mol': MoleculeHierarchy(pos_dim=4),
    'name': lambda d: TextHierarchy(pos_dim=4)(Data(text=d.name)),
}, pos_dim=4)


def test_molecule_and_name_under_one_root():
    out = TRANSFORM(_sample('c1ccccc1O', 'phenol', 1.5))
    assert 'mol_atom' in out.node_types and 'name_token' in out.node_types
    assert out.y.tolist() == [1.5]
    assert out['mol_molecule'].hsa_pos.tolist() == [[1, 0, 0, 0]]
    assert out['name_document'].hsa_pos.tolist() == [[0, 1, 0, 0]]
    h = Hierarchy.from_hetero(out)
    assert h.num_roots == 1 and set(h.leaf_types) == {'mol_atom', 'name_token'}
    assert h.num_leaves == 7 + 1


def test_batched_multimodal_conv():
    samples = [TRANSFORM(_sample(s, n, 0.0)) for s, n in
               (('CCO', 'ethanol'), ('c1ccccc1O', 'phenol, a simple aromatic alcohol'))]
    batch = next(iter(DataLoader(samples, batch_size=2)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 2
    conv = HSAConv({'mol_atom': 9, 'name_token': 3}, 4, heads=2, pos_channels=4)
    x = {'mol_atom': batch['mol_atom'].x,
         'name_token': torch.randn(batch['name_token'].num_nodes, 3)}
    out = conv(x, h, pos={t: batch[t].hsa_pos for t in batch.node_types})
    assert out['mol_atom'].shape == (batch['mol_atom'].num_nodes, 8)


def test_errors():
    with pytest.raises(ValueError, match="'pos_dim'"):
        nest({'a': TRANSFORM(_sample('C', 'm', 0.0)), 'b': TRANSFORM(_sample('C', 'm', 0.0))},
             pos_dim=1)
    with pytest.raises(ValueError, match="must be a non-empty dict"):
        MultiModalHierarchy({}, pos_dim=2)
