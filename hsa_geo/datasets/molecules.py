r"""Molecular property prediction sets in OGB's own on-disk format, built offline:
the dataset class and its evaluator.

No machine this project runs on may download data at run time, so hsa_geo ships
small real molecular sets as CSV files (SMILES and labels, top-level
``hsa_geo/datasets/data/`` with their provenance) and writes them into the directory layout
of the Open Graph Benchmark (:mod:`hsa_geo.datasets.ogb_writer`), with
:func:`ogb.utils.smiles2graph` features, so that OGB's own
:class:`~ogb.graphproppred.PygGraphPropPredDataset` loads them and OGB's
:class:`~ogb.graphproppred.Evaluator` scores them.  ``ogbg-molfreesolv``
reproduces OGB's dataset of that name (MoleculeNet's FreeSolv, the same 642
molecules in the same order, scaffold split made the way OGB made it); the
others are named like OGB's but are not part of OGB.
"""
from __future__ import annotations

import os.path as osp
import shutil
import warnings
from typing import Callable, List

import torch

try:
    from ogb.graphproppred import Evaluator, PygGraphPropPredDataset
except ImportError as error:  # the optional extra
    raise ImportError("OGB's molecule datasets need the 'ogb' package: pip install "
                      "'hsa_geo[ogb]' (or pip install ogb rdkit)") from error

from hsa_geo.datasets.files import DATA_DIR, data_path
from hsa_geo.datasets.molecule_sets import (
    OFFLINE_DATASETS,
    OfflineMolSpec,
    ogb_dir_name,
    read_molecules,
)
from hsa_geo.datasets.ogb_writer import build_ogb_layout
from hsa_geo.datasets.scaffolds import murcko_scaffold, published_split, scaffold_split

__all__ = ['OfflineMolSpec', 'OFFLINE_DATASETS', 'DATA_DIR', 'scaffold_split',
           'build_ogb_layout', 'ogb_dataset', 'evaluator', 'read_molecules',
           'published_split', 'murcko_scaffold', 'OGBMolDataset', 'data_path']


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
    folder = osp.join(root, ogb_dir_name(name))
    existed = osp.isdir(folder)
    try:
        return OGBMolDataset(name=name, root=root, **kwargs)
    except OSError as error:  # urllib's URLError is an OSError
        if not existed:  # leave no half-made folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(
            f"'{name}' is not one of the offline datasets {sorted(OFFLINE_DATASETS)} and "
            f"OGB could not download it ({error}). Run once where a network exists, or "
            f"copy OGB's '{ogb_dir_name(name)}' folder into {root!r}.") from error


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
