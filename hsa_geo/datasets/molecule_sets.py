r"""The molecular sets shipped as CSV files (SMILES and labels, with their
provenance) and how each becomes a dataset in OGB's format: its
:class:`OfflineMolSpec`, listed in :data:`OFFLINE_DATASETS`."""
from __future__ import annotations

import csv
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Tuple

from hsa_geo.datasets.files import data_path

__all__ = ['OfflineMolSpec', 'OFFLINE_DATASETS', 'read_molecules', 'molecule_spec',
           'ogb_dir_name']


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
            'dir_path': osp.join(root, ogb_dir_name(name)),
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


def ogb_dir_name(name: str) -> str:
    return '_'.join(name.split('-'))  # OGB's own rule: ogbg-molhiv -> ogbg_molhiv


def molecule_spec(name: str) -> OfflineMolSpec:
    if name not in OFFLINE_DATASETS:
        raise ValueError(f"'name' must be one of the offline datasets "
                         f"{sorted(OFFLINE_DATASETS)}, got {name!r}")
    return OFFLINE_DATASETS[name]


def read_molecules(name: str) -> Dict[str, list]:
    r"""The rows of an offline dataset's CSV file as columns (lists of strings),
    e.g. ``read_molecules('ogbg-molfreesolv')['iupac']`` for the molecules'
    names in the order of the dataset's graphs."""
    with open(data_path(molecule_spec(name).file), newline='') as f:
        rows = list(csv.DictReader(f))
    return {key: [row[key] for row in rows] for key in rows[0]}
