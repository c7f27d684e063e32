r"""Writes a shipped molecular set into the Open Graph Benchmark's on-disk
layout, with :func:`ogb.utils.smiles2graph` features::

    {root}/{ogbg_molname}/
        RELEASE_v1.txt
        mapping/mol.csv.gz          labels and SMILES, one row per graph
        raw/edge.csv.gz, edge-feat.csv.gz, node-feat.csv.gz,
            num-node-list.csv.gz, num-edge-list.csv.gz, graph-label.csv.gz
        split/scaffold/{train,valid,test}.csv.gz
"""
from __future__ import annotations

import csv
import gzip
import os
import os.path as osp
from typing import List

import numpy as np

from hsa_geo.datasets.molecule_sets import (
    OfflineMolSpec,
    molecule_spec,
    ogb_dir_name,
    read_molecules,
)
from hsa_geo.datasets.scaffolds import published_split, scaffold_split

__all__ = ['build_ogb_layout']


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
    try:
        from ogb.utils import smiles2graph
    except ImportError as error:  # the optional extra
        raise ImportError("writing OGB's format needs the 'ogb' package (and rdkit): pip "
                          "install 'hsa_geo[ogb]'") from error
    spec = molecule_spec(name)
    folder = osp.join(root, ogb_dir_name(name))
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
