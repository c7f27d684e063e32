r"""Molecular property prediction sets in OGB's own on-disk format, built offline.

No machine this project runs on may download data at run time, so hsa_geo ships
small real molecular sets as CSV files (SMILES and labels, top-level
``datasets/`` with their provenance) and writes them into the directory layout
of the Open Graph Benchmark::

    {root}/{ogbg_molname}/
        RELEASE_v1.txt
        mapping/mol.csv.gz          labels and SMILES, one row per graph
        raw/edge.csv.gz, edge-feat.csv.gz, node-feat.csv.gz,
            num-node-list.csv.gz, num-edge-list.csv.gz, graph-label.csv.gz
        split/scaffold/{train,valid,test}.csv.gz

with :func:`ogb.utils.smiles2graph` features, so that OGB's own
:class:`~ogb.graphproppred.PygGraphPropPredDataset` loads them and OGB's
:class:`~ogb.graphproppred.Evaluator` scores them.  ``ogbg-molfreesolv``
reproduces OGB's dataset of that name (MoleculeNet's FreeSolv, the same 642
molecules in the same order, scaffold split made the way OGB made it); the
others are named like OGB's but are not part of OGB.
"""
from __future__ import annotations

import csv
import gzip
import os
import os.path as osp
import shutil
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from ogb.graphproppred import Evaluator, PygGraphPropPredDataset

__all__ = ['OfflineMolSpec', 'OFFLINE_DATASETS', 'DATA_DIR', 'scaffold_split',
           'build_ogb_layout', 'ogb_dataset', 'evaluator', 'read_molecules',
           'published_split', 'murcko_scaffold', 'OGBMolDataset']

#: The folder holding the shipped CSV files (the repository's ``datasets/``);
#: the environment variable ``HSA_GEO_DATA`` overrides it.
DATA_DIR = os.environ.get(
    'HSA_GEO_DATA', osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                             'datasets'))


@dataclass(frozen=True)
class OfflineMolSpec:
    r"""How one offline dataset is made from a shipped CSV file.

    Args:
        file (str): CSV file name in :data:`DATA_DIR`.
        smiles_column (str): Column with the SMILES strings.
        label_columns (Tuple[str]): Columns holding the labels (one task each).
        task_type (str): OGB task type (``'regression'``, ``'binary
            classification'`` or ``'multiclass classification'``).
        eval_metric (str): OGB metric (``'rmse'``, ``'rocauc'``, ``'acc'``...).
        num_classes (int): Number of classes; ``-1`` for regression.
        classes (Tuple[str]): For a label column holding class names, the
            names in the order of their integer codes.
        splits (Tuple[str]): Split types written under ``split/``; the first
            is the default.  ``'scaffold'`` is computed (:func:`scaffold_split`);
            ``'published'`` takes train and test from the CSV's ``split``
            column and moves a fixed random 10% of train (seed 0) to valid,
            since the published split has no validation part.
        description (str): One line for humans.
    """
    file: str
    smiles_column: str
    label_columns: Tuple[str, ...]
    task_type: str
    eval_metric: str
    num_classes: int = -1
    classes: Tuple[str, ...] = ()
    splits: Tuple[str, ...] = ('scaffold', )
    description: str = ''

    def meta_dict(self, name: str, root: str) -> Dict[str, str]:
        r"""OGB's ``meta_dict`` (the columns of its ``master.csv``)."""
        return {
            'num tasks': str(len(self.label_columns)), 'eval metric': self.eval_metric,
            'download_name': name.split('-', 1)[1], 'version': '1',
            'url': 'offline (hsa_geo.datasets)', 'add_inverse_edge': 'True',
            'data type': 'mol', 'has_node_attr': 'True', 'has_edge_attr': 'True',
            'task type': self.task_type, 'num classes': str(self.num_classes),
            'split': self.splits[0], 'additional node files': 'None',
            'additional edge files': 'None', 'binary': 'False',
            'dir_path': osp.join(root, _dir_name(name)),
        }


#: The datasets :func:`ogb_dataset` builds without a network.
OFFLINE_DATASETS: Dict[str, OfflineMolSpec] = {
    'ogbg-molfreesolv': OfflineMolSpec(
        'freesolv.csv', 'smiles', ('expt', ), 'regression', 'rmse',
        description='FreeSolv hydration free energy (kcal/mol), 642 molecules; '
        'the same as OGB\'s ogbg-molfreesolv'),
    'ogbg-molsolubility': OfflineMolSpec(
        'solubility.csv', 'smiles', ('logS', ), 'regression', 'rmse',
        splits=('scaffold', 'published'),
        description='Huuskonen aqueous solubility log S, 1,282 molecules'),
    'ogbg-molsolubility-class': OfflineMolSpec(
        'solubility.csv', 'smiles', ('solubility_class', ), 'multiclass classification',
        'acc', num_classes=3, classes=('low', 'medium', 'high'),
        splits=('scaffold', 'published'),
        description='Huuskonen aqueous solubility in 3 classes (low, medium, high)'),
}


def _dir_name(name: str) -> str:
    return '_'.join(name.split('-'))  # OGB's own rule: ogbg-molhiv -> ogbg_molhiv


def data_path(file: str) -> str:
    r"""The path of a shipped data file in :data:`DATA_DIR`; a clear error
    when it is missing."""
    path = osp.join(DATA_DIR, file)
    if not osp.exists(path):
        raise FileNotFoundError(f"missing data file {path} (the repository's datasets/ "
                                f"folder; set HSA_GEO_DATA to the folder holding {file})")
    return path


def read_molecules(name: str) -> Dict[str, list]:
    r"""The rows of an offline dataset's CSV file as columns (lists of strings),
    e.g. ``read_molecules('ogbg-molfreesolv')['iupac']`` for the molecules'
    names in the order of the dataset's graphs."""
    with open(data_path(_spec(name).file), newline='') as f:
        rows = list(csv.DictReader(f))
    return {key: [row[key] for row in rows] for key in rows[0]}


def _spec(name: str) -> OfflineMolSpec:
    if name not in OFFLINE_DATASETS:
        raise ValueError(f"'name' must be one of the offline datasets "
                         f"{sorted(OFFLINE_DATASETS)}, got {name!r}")
    return OFFLINE_DATASETS[name]


def scaffold_split(smiles: Sequence[str], frac_train: float = 0.8,
                   frac_valid: float = 0.1) -> Dict[str, List[int]]:
    r"""The deterministic scaffold split OGB used for its molecule datasets
    (Hu et al., "Strategies for Pre-training Graph Neural Networks", 2020):
    molecules are grouped by their Bemis-Murcko scaffold (rdkit, chirality
    included); groups are taken largest first (ties: the group whose first
    molecule comes later first), filling train up to :obj:`frac_train` of the
    molecules, then valid up to :obj:`frac_train` + :obj:`frac_valid`, the
    rest going to test.  No scaffold is shared between the parts.

    Returns:
        ``{'train': [...], 'valid': [...], 'test': [...]}`` indices.
    """
    if not 0 < frac_train < 1 or not 0 <= frac_valid < 1 - frac_train + 1e-12:
        raise ValueError(f"'frac_train' and 'frac_valid' must be fractions summing to "
                         f"at most 1, got {frac_train} and {frac_valid}")
    groups: Dict[str, List[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s), []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)
    train_cutoff = frac_train * len(smiles)
    valid_cutoff = (frac_train + frac_valid) * len(smiles)
    split = {'train': [], 'valid': [], 'test': []}
    for group in ordered:
        if len(split['train']) + len(group) > train_cutoff:
            if len(split['train']) + len(split['valid']) + len(group) > valid_cutoff:
                split['test'] += group
            else:
                split['valid'] += group
        else:
            split['train'] += group
    return split


def published_split(assigned: Sequence[str], valid_fraction: float = 0.1,
                    seed: int = 0) -> Dict[str, List[int]]:
    r"""The published train/test split of a dataset given per molecule as
    ``'train'``/``'test'``, with a fixed random :obj:`valid_fraction` of the
    training molecules (drawn with :obj:`seed`) held out as validation."""
    train = [i for i, a in enumerate(assigned) if a == 'train']
    test = [i for i, a in enumerate(assigned) if a == 'test']
    if len(train) + len(test) != len(assigned):
        raise ValueError("'assigned' must hold only 'train' and 'test'")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    num_valid = round(valid_fraction * len(train))
    valid = sorted(train[i] for i in order[:num_valid].tolist())
    train = sorted(train[i] for i in order[num_valid:].tolist())
    return {'train': train, 'valid': valid, 'test': test}


def murcko_scaffold(smiles: str) -> str:
    r"""The Bemis-Murcko scaffold of a molecule as SMILES (chirality kept);
    the empty string for molecules without rings."""
    from rdkit.Chem.Scaffolds import MurckoScaffold
    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=True)


def _write_csv_gz(path: str, rows) -> None:
    with gzip.open(path, 'wt', newline='') as f:
        csv.writer(f).writerows(rows)


def build_ogb_layout(name: str, root: str, force: bool = False) -> str:
    r"""Writes the offline dataset :obj:`name` in OGB's directory layout under
    :obj:`root` and returns its folder.  Does nothing when the folder is
    complete (its ``RELEASE_v1.txt`` is written last), unless :obj:`force`.

    Every graph is :func:`ogb.utils.smiles2graph` of its SMILES, stored the way
    OGB stores its molecule sets (one row per bond in ``edge.csv.gz``; OGB's
    loader adds the reverse edges, ``add_inverse_edge=True``).
    """
    from ogb.utils import smiles2graph
    spec = _spec(name)
    folder = osp.join(root, _dir_name(name))
    release = osp.join(folder, 'RELEASE_v1.txt')
    if osp.exists(release) and not force:
        return folder
    columns = read_molecules(name)
    smiles = columns[spec.smiles_column]
    labels = np.stack([_labels(columns[c], spec) for c in spec.label_columns], axis=1)

    for sub in ('mapping', 'raw', *(osp.join('split', s) for s in spec.splits)):
        os.makedirs(osp.join(folder, sub), exist_ok=True)
    edges, edge_feats, node_feats, num_nodes, num_edges = [], [], [], [], []
    for i, s in enumerate(smiles):
        graph = smiles2graph(s)
        if graph['num_nodes'] == 0:
            raise ValueError(f"molecule {i} of '{name}' has no atoms: {s!r}")
        # smiles2graph lists each bond twice, (i, j) then (j, i); OGB stores one
        edges.append(graph['edge_index'][:, ::2].T)
        edge_feats.append(graph['edge_feat'][::2])
        node_feats.append(graph['node_feat'])
        num_nodes.append(graph['num_nodes'])
        num_edges.append(edges[-1].shape[0])
    raw = osp.join(folder, 'raw')
    _write_csv_gz(osp.join(raw, 'edge.csv.gz'), np.concatenate(edges).tolist())
    _write_csv_gz(osp.join(raw, 'edge-feat.csv.gz'), np.concatenate(edge_feats).tolist())
    _write_csv_gz(osp.join(raw, 'node-feat.csv.gz'), np.concatenate(node_feats).tolist())
    _write_csv_gz(osp.join(raw, 'num-node-list.csv.gz'), [[n] for n in num_nodes])
    _write_csv_gz(osp.join(raw, 'num-edge-list.csv.gz'), [[n] for n in num_edges])
    _write_csv_gz(osp.join(raw, 'graph-label.csv.gz'), labels.tolist())
    header = list(spec.label_columns) + ['smiles']
    _write_csv_gz(osp.join(folder, 'mapping', 'mol.csv.gz'),
                  [header] + [[*y, s] for y, s in zip(labels.tolist(), smiles)])

    for split_type in spec.splits:
        if split_type == 'scaffold':
            split = scaffold_split(smiles)
        elif split_type == 'published':
            split = published_split(columns['split'])
        else:  # pragma: no cover - OFFLINE_DATASETS only names the two above
            raise ValueError(f'unknown split type {split_type!r}')
        for part, index in split.items():
            _write_csv_gz(osp.join(folder, 'split', split_type, f'{part}.csv.gz'),
                          [[i] for i in index])
    with open(release, 'w') as f:
        f.write(f'{name}: built offline by hsa_geo.datasets from {spec.file}\n')
    return folder


def _labels(values: List[str], spec: OfflineMolSpec) -> np.ndarray:
    if spec.classes:
        code = {c: i for i, c in enumerate(spec.classes)}
        return np.array([code[v] for v in values], dtype=np.int64)
    return np.array([float(v) for v in values], dtype=np.float64)


def pre_transform_folder(pre_transform: Callable) -> str:
    r"""The processed folder of :obj:`pre_transform`:
    ``processed_{class name}_{digest}``, the digest taken over its full
    ``repr`` (every builder of :mod:`hsa_geo.transforms` shows every argument
    that changes its output), so two configurations never share a cache.  A
    ``repr`` that holds a memory address cannot be matched across processes:
    it gets ``processed_{class name}_unkeyed``, rebuilt on every load."""
    from hsa_geo.transforms._base import config_digest, has_stable_repr
    name = type(pre_transform).__name__.lower()
    key = config_digest(pre_transform) if has_stable_repr(pre_transform) else 'unkeyed'
    return f'processed_{name}_{key}'


class OGBMolDataset(PygGraphPropPredDataset):
    r""":class:`~ogb.graphproppred.PygGraphPropPredDataset` that keeps one
    processed file per :obj:`pre_transform` (``processed/`` without one, else
    :func:`pre_transform_folder`), so that the plain graphs and, say, their
    :class:`~hsa_geo.transforms.MoleculeHierarchy` versions of any
    configuration are cached side by side instead of overwriting each other.

    A cache is never reused for another configuration: a folder whose stored
    ``pre_transform`` differs from the requested one (a cache written by an
    older version, or copied by hand) is rebuilt with a warning, where PyG
    itself would only warn; a pre-transform without a stable ``repr`` is
    rebuilt on every load, also with a warning.
    """
    @property
    def processed_dir(self) -> str:
        if self.pre_transform is None:
            return super().processed_dir
        return osp.join(self.root, pre_transform_folder(self.pre_transform))

    def _process(self):
        from torch_geometric.data.dataset import _repr

        from hsa_geo.transforms._base import has_stable_repr
        if self.pre_transform is not None and not self.force_reload:
            stamp = osp.join(self.processed_dir, 'pre_transform.pt')
            if not has_stable_repr(self.pre_transform):
                warnings.warn(f"the pre_transform {self.pre_transform!r} has no stable "
                              f"repr (it shows a memory address), so its cache cannot be "
                              f"matched: rebuilding {self.processed_dir}", stacklevel=2)
                self.force_reload = True
            elif osp.exists(stamp) and \
                    torch.load(stamp, weights_only=False) != _repr(self.pre_transform):
                warnings.warn(f"{self.processed_dir} was built with another pre_transform "
                              f"({torch.load(stamp, weights_only=False)}); rebuilding it "
                              f"for {self.pre_transform!r}", stacklevel=2)
                self.force_reload = True
        super()._process()


def ogb_dataset(name: str, root: str = 'data', **kwargs) -> PygGraphPropPredDataset:
    r"""OGB's :class:`~ogb.graphproppred.PygGraphPropPredDataset` for an offline
    dataset (:data:`OFFLINE_DATASETS`, built with :func:`build_ogb_layout` on
    first use) or for any real OGB graph property name (OGB downloads it when
    a network exists; a clear error says so when none does).

    Args:
        name (str): ``'ogbg-molfreesolv'``, ``'ogbg-molsolubility'``,
            ``'ogbg-molsolubility-class'``, or an OGB name such as
            ``'ogbg-molhiv'``.
        root (str, optional): The folder holding datasets. (default: ``'data'``)
        **kwargs: ``transform`` and ``pre_transform``, as for any PyG dataset;
            each pre-transform gets its own cached processed file.
    """
    from hsa_geo.datasets.ogb_compat import allow_pyg_in_torch_load
    allow_pyg_in_torch_load()
    unknown = set(kwargs) - {'transform', 'pre_transform'}
    if unknown:
        raise TypeError(f"ogb_dataset() got unexpected keyword arguments {sorted(unknown)}")
    if name in OFFLINE_DATASETS:
        build_ogb_layout(name, root)
        meta = OFFLINE_DATASETS[name].meta_dict(name, root)
        return OGBMolDataset(name=name, root=root, meta_dict=meta, **kwargs)
    if name not in _ogb_names():
        raise ValueError(f"'name' must be an offline dataset {sorted(OFFLINE_DATASETS)} "
                         f"or an OGB graph property dataset, got {name!r}")
    folder = osp.join(root, _dir_name(name))
    existed = osp.isdir(folder)
    try:
        return OGBMolDataset(name=name, root=root, **kwargs)
    except OSError as error:  # urllib's URLError is an OSError
        if not existed:  # leave no half-made folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(
            f"'{name}' is not one of the offline datasets {sorted(OFFLINE_DATASETS)} and "
            f"OGB could not download it ({error}). Run once where a network exists, or "
            f"copy OGB's '{_dir_name(name)}' folder into {root!r}.") from error


class _OfflineEvaluator(Evaluator):
    def __init__(self, name: str, num_tasks: int, eval_metric: str):
        # OGB's Evaluator reads these two from its master.csv, which does not
        # list the offline-only names; everything else is OGB's code
        self.name, self.num_tasks, self.eval_metric = name, num_tasks, eval_metric


def evaluator(name: str) -> Evaluator:
    r"""OGB's :class:`~ogb.graphproppred.Evaluator` for :obj:`name`; for the
    offline-only names it is OGB's class with the task count and metric taken
    from :data:`OFFLINE_DATASETS` (OGB's ``master.csv`` does not list them)."""
    if name in OFFLINE_DATASETS and name not in _ogb_names():
        spec = OFFLINE_DATASETS[name]
        return _OfflineEvaluator(name, len(spec.label_columns), spec.eval_metric)
    if name not in _ogb_names():
        raise ValueError(f"'name' must be an offline dataset {sorted(OFFLINE_DATASETS)} "
                         f"or an OGB graph property dataset, got {name!r}")
    return Evaluator(name)


def _ogb_names() -> List[str]:
    import ogb.graphproppred
    import pandas as pd
    master = osp.join(osp.dirname(ogb.graphproppred.__file__), 'master.csv')
    return list(pd.read_csv(master, index_col=0, nrows=0).columns)
