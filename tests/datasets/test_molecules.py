import csv
import gzip
import os
import urllib.error

import numpy as np
import pytest
import torch

pytest.importorskip('rdkit')
from ogb.utils import smiles2graph  # noqa: E402

from hsa_geo.datasets import (  # noqa: E402
    OFFLINE_DATASETS,
    build_ogb_layout,
    evaluator,
    murcko_scaffold,
    ogb_dataset,
    published_split,
    read_molecules,
    scaffold_split,
)
from hsa_geo.transforms import MoleculeHierarchy  # noqa: E402


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('ogb'))


@pytest.fixture(scope='module')
def freesolv(root):
    return ogb_dataset('ogbg-molfreesolv', root)


def test_offline_build_equals_smiles2graph(freesolv):
    smiles = read_molecules('ogbg-molfreesolv')['smiles']
    expt = read_molecules('ogbg-molfreesolv')['expt']
    assert len(freesolv) == len(smiles) == 642
    assert freesolv.num_tasks == 1 and freesolv.task_type == 'regression'
    assert freesolv.eval_metric == 'rmse'
    for i, s in enumerate(smiles):
        graph, data = smiles2graph(s), freesolv[i]
        assert data.num_nodes == graph['num_nodes']
        assert torch.equal(data.x, torch.from_numpy(graph['node_feat']))
        assert torch.equal(data.edge_index, torch.from_numpy(graph['edge_index']))
        assert torch.equal(data.edge_attr, torch.from_numpy(graph['edge_feat']))
        assert data.y.shape == (1, 1)
        assert data.y.item() == pytest.approx(float(expt[i]), abs=1e-5)


def test_mapping_file_lists_the_molecules(root, freesolv):
    with gzip.open(os.path.join(root, 'ogbg_molfreesolv', 'mapping', 'mol.csv.gz'), 'rt') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['expt', 'smiles']
    assert [r[1] for r in rows[1:]] == read_molecules('ogbg-molfreesolv')['smiles']


def test_scaffold_split_is_a_partition_without_shared_scaffolds(freesolv):
    split = freesolv.get_idx_split()
    parts = {k: v.tolist() for k, v in split.items()}
    everything = sorted(parts['train'] + parts['valid'] + parts['test'])
    assert everything == list(range(len(freesolv)))
    # OGB's 80/10/10 cut-offs: train <= 80%, train + valid <= 90%
    assert len(parts['train']) <= 0.8 * len(freesolv) < len(parts['train']) + 10
    assert len(parts['train']) + len(parts['valid']) <= 0.9 * len(freesolv)
    smiles = read_molecules('ogbg-molfreesolv')['smiles']
    scaffolds = {k: {murcko_scaffold(smiles[i]) for i in v} for k, v in parts.items()}
    assert not scaffolds['train'] & scaffolds['test']
    assert not scaffolds['train'] & scaffolds['valid']
    assert not scaffolds['valid'] & scaffolds['test']


def test_scaffold_split_order_rule():
    # scaffolds: benzene x3, cyclohexane x2 (ids 3, 4), pyridine x2 (ids 5, 6), 3 acyclic
    smiles = ['c1ccccc1C', 'c1ccccc1O', 'c1ccccc1N', 'C1CCCCC1C', 'C1CCCCC1O',
              'c1ccncc1C', 'c1ccncc1O', 'CCO', 'CCN', 'CCC']
    split = scaffold_split(smiles, frac_train=0.5, frac_valid=0.2)
    # groups by (size, first index), largest first: acyclic (3, 7), benzene (3, 0),
    # pyridine (2, 5), cyclohexane (2, 3); cut-offs train 5, train + valid 7.
    # acyclic fits train; benzene would make train 6 > 5 but train + valid 6 <= 7;
    # pyridine fits train (5); cyclohexane fits neither
    assert split == {'train': [7, 8, 9, 5, 6], 'valid': [0, 1, 2], 'test': [3, 4]}


def test_scaffold_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match='frac_train'):
        scaffold_split(['CCO'], frac_train=1.5)


def test_published_split():
    split = published_split(['train'] * 20 + ['test'] * 5)
    assert split['test'] == list(range(20, 25))
    assert len(split['valid']) == 2 and not set(split['valid']) & set(split['train'])
    assert sorted(split['train'] + split['valid']) == list(range(20))
    assert published_split(['train'] * 20 + ['test'] * 5) == split  # fixed seed
    with pytest.raises(ValueError, match='assigned'):
        published_split(['train', 'dev'])


def test_solubility_sets(root):
    regression = ogb_dataset('ogbg-molsolubility', root)
    classes = ogb_dataset('ogbg-molsolubility-class', root)
    assert len(regression) == len(classes) == 1282
    assert classes.num_classes == 3 and classes.task_type == 'multiclass classification'
    assert classes._data.y.dtype == torch.long
    assert set(classes._data.y.view(-1).tolist()) == {0, 1, 2}
    columns = read_molecules('ogbg-molsolubility')
    published = classes.get_idx_split('published')
    assert published['test'].tolist() == [i for i, s in enumerate(columns['split'])
                                          if s == 'test']
    assert len(published['train']) + len(published['valid']) == 1025
    assert regression.get_idx_split()['train'].numel() <= 0.8 * 1282


def test_evaluator_scores(freesolv):
    y = freesolv._data.y[:50]
    pred = y + torch.linspace(-1, 1, 50).view(-1, 1)
    rmse = evaluator('ogbg-molfreesolv').eval({'y_true': y, 'y_pred': pred})['rmse']
    assert rmse == pytest.approx(torch.linspace(-1, 1, 50).pow(2).mean().sqrt().item(),
                                 rel=1e-5)
    labels = torch.tensor([[0], [1], [2], [1]])
    acc = evaluator('ogbg-molsolubility-class').eval(
        {'y_true': labels, 'y_pred': torch.tensor([[0], [1], [1], [1]])})['acc']
    assert acc == pytest.approx(0.75)
    assert evaluator('ogbg-molhiv').eval_metric == 'rocauc'
    with pytest.raises(ValueError, match="'name'"):
        evaluator('ogbg-nothing')


def test_processed_files_load_with_weights_only(root, freesolv):
    data, slices = torch.load(os.path.join(root, 'ogbg_molfreesolv', 'processed',
                                           'geometric_data_processed.pt'), weights_only=True)
    assert data.x.size(0) == slices['x'][-1]


def test_pre_transform_gets_its_own_cache(root, freesolv):
    hierarchical = ogb_dataset('ogbg-molfreesolv', root,
                               pre_transform=MoleculeHierarchy(pos_dim=8))
    assert hierarchical[3]['atom'].x.equal(freesolv[3].x)
    assert hierarchical[3]['atom'].hsa_pos.size(1) == 8
    assert hierarchical.processed_dir != freesolv.processed_dir
    again = ogb_dataset('ogbg-molfreesolv', root)  # the plain cache is untouched
    assert again[3].x.equal(freesolv[3].x) and 'hsa_pos' not in again[3]


def test_each_configuration_gets_its_own_cache(root, freesolv):
    # regression: the folder was named from an incomplete repr, so a second
    # configuration silently got the first one's data
    one = ogb_dataset('ogbg-molfreesolv', root, pre_transform=MoleculeHierarchy(pos_dim=4))
    two = ogb_dataset('ogbg-molfreesolv', root,
                      pre_transform=MoleculeHierarchy(pos_dim=4, use_smiles=False))
    six = ogb_dataset('ogbg-molfreesolv', root, pre_transform=MoleculeHierarchy(pos_dim=6))
    assert len({one.processed_dir, two.processed_dir, six.processed_dir}) == 3
    assert one[0]['atom'].hsa_pos.size(1) == 4 and six[0]['atom'].hsa_pos.size(1) == 6
    again = ogb_dataset('ogbg-molfreesolv', root, pre_transform=MoleculeHierarchy(pos_dim=4))
    assert again.processed_dir == one.processed_dir


def test_stale_cache_is_rebuilt_not_reused(root, freesolv):
    transform = MoleculeHierarchy(pos_dim=10)
    first = ogb_dataset('ogbg-molfreesolv', root, pre_transform=transform)
    # a cache written for another configuration in this folder (an older
    # version's naming, or a copy by hand) is detected and rebuilt
    torch.save('MoleculeHierarchy(pos_dim=2)',
               os.path.join(first.processed_dir, 'pre_transform.pt'))
    torch.save((None, None), first.processed_paths[0])
    with pytest.warns(UserWarning, match='was built with another pre_transform'):
        second = ogb_dataset('ogbg-molfreesolv', root, pre_transform=transform)
    assert second[0]['atom'].hsa_pos.size(1) == 10
    assert torch.load(os.path.join(first.processed_dir, 'pre_transform.pt'),
                      weights_only=False) == repr(transform)


def test_build_is_cached(root, freesolv):
    folder = build_ogb_layout('ogbg-molfreesolv', root)
    stamp = os.path.getmtime(os.path.join(folder, 'raw', 'edge.csv.gz'))
    build_ogb_layout('ogbg-molfreesolv', root)
    assert os.path.getmtime(os.path.join(folder, 'raw', 'edge.csv.gz')) == stamp


def test_unknown_and_unreachable_names(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match='ogbg-molnothing'):
        ogb_dataset('ogbg-molnothing', str(tmp_path))
    with pytest.raises(TypeError, match='unexpected'):
        ogb_dataset('ogbg-molfreesolv', str(tmp_path), meta_dict={})

    def offline(url):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr('ogb.graphproppred.dataset_pyg.decide_download', offline)
    with pytest.raises(RuntimeError, match='could not download'):
        ogb_dataset('ogbg-molbace', str(tmp_path))
    assert not os.path.exists(tmp_path / 'ogbg_molbace')  # nothing half-made left


def test_read_molecules_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="'name'"):
        read_molecules('ogbg-molhiv')
    monkeypatch.setattr('hsa_geo.datasets.files.DATA_DIR', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='HSA_GEO_DATA'):
        read_molecules('ogbg-molfreesolv')


def test_every_offline_dataset_names_existing_columns():
    for name, spec in OFFLINE_DATASETS.items():
        columns = read_molecules(name)
        assert spec.smiles_column in columns
        for column in spec.label_columns:
            values = columns[column]
            if spec.classes:
                assert set(values) == set(spec.classes)
            else:
                assert np.isfinite(np.array(values, dtype=float)).all()
