r"""The data and the model of ``examples/hierarchical_text.py``: texts as
hierarchies (and the flat baselines' samples), the leaf embeddings and the
:class:`~hsa_geo.nn.HTEPredictor` over them, and models matched in their
parameter count."""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch.nn import Embedding, Module
from torch_geometric.data import Data, HeteroData

from hsa_geo import Hierarchy
from hsa_geo.datasets import NEWS_FIELDS
from hsa_geo.hierarchy import hierarchy_node_types
from hsa_geo.nn import HTEPredictor
from hsa_geo.transforms import FlatHierarchy, TextHierarchy, nest

from _experiment import load_tokenizer

EMPTY_FIELD = '[PAD]'  # a missing title or subtitle: one padding token


def _light(data: HeteroData) -> HeteroData:
    del data.text, data.tokens  # strings stay out of the batches
    return data


def build_samples(texts: list, labels: Tensor, args, progress: bool) -> list:
    r"""One hierarchy per text (token ids on the leaves); for records
    (``news_fields``) one tree per field nested under a key-value root."""
    from tqdm import tqdm
    tokenizer = load_tokenizer()
    text = TextHierarchy(tokenizer=tokenizer, pos_dim=args.pos_dim, words=args.words,
                         paragraph_sentences=args.paragraph_sentences,
                         pos_kind=args.pos_kind)
    out = []
    for item, label in tqdm(list(zip(texts, labels.tolist(), strict=True)), desc='hierarchies',
                            disable=not progress, leave=False):
        y = torch.tensor([label])
        if isinstance(item, dict):
            fields = {f: _light(text(Data(text=item[f] or EMPTY_FIELD))) for f in NEWS_FIELDS}
            data = nest(fields, args.pos_dim)
            data.y = y
        else:
            data = _light(text(Data(text=item, y=y)))
        out.append(data)
    return out


def flat_samples(texts: list, hierarchical: list, args, max_leaves: Optional[int]) -> list:
    r"""The FSA baselines: every token under one root, in text order; for
    records, the fields' text concatenated (title, subtitle, body), as the
    paper's FSA."""
    flat = FlatHierarchy(args.pos_dim, max_leaves, pos_kind=args.pos_kind)
    if not isinstance(texts[0], dict):
        return [flat(d) for d in hierarchical]
    text = TextHierarchy(tokenizer=load_tokenizer(), pos_dim=args.pos_dim, words=args.words,
                         pos_kind=args.pos_kind)
    return [flat(_light(text(Data(text='\n\n'.join(r[f] for f in NEWS_FIELDS if r[f]),
                                  y=d.y))))
            for r, d in zip(texts, hierarchical, strict=True)]


def position_groups(sample: HeteroData, per_type: bool, pos_dim: int
                    ) -> Union[int, Dict[tuple, int]]:
    r"""The model's ``pos_channels`` for samples like :obj:`sample`: one
    projection per position type (the paper, Appendix F): the 1D-grid
    positions of every text level share one, the one-hot keys of a record's
    fields (the field roots under the record's root, see :func:`nest`) have
    their own; roots have zero positions and need none.  ``per_type=False``:
    one projection for all."""
    if not per_type:
        return pos_dim
    _, clusters = hierarchy_node_types(sample.edge_types, sample.node_types)
    parents = {src: dst for src, rel, dst in sample.edge_types if rel == 'in'}
    roots = [t for t in clusters if t not in parents]
    keys = [f'{f}_document' for f in NEWS_FIELDS if f'{f}_document' in parents]
    grid = [t for t in sample.node_types if t not in roots and t not in keys]
    return {tuple(grid): pos_dim, **({tuple(keys): pos_dim} if keys else {})}


def positioned_types(pos_channels) -> Optional[List[str]]:
    return None if isinstance(pos_channels, int) else [t for g in pos_channels for t in g]


class TextModel(Module):
    r"""Leaf embeddings -> :class:`HTEPredictor`; several leaf types (the
    fields of a record) share the embeddings and get their own
    projections."""
    def __init__(self, leaves: str, leaf_types: List[str], num_classes: int, args,
                 attention: bool, pos_channels, table: Tensor = None,
                 vocabulary: Tensor = None):
        super().__init__()
        if leaves == 'frozen':
            self.register_buffer('table', table, persistent=False)
            self.embedding, width = None, table.size(1)
        else:
            # ids outside the training vocabulary share row 0
            self.register_buffer('vocabulary', vocabulary, persistent=False)
            self.embedding = Embedding(int(vocabulary.max()) + 1, args.embedding_dim)
            width = args.embedding_dim
        self.leaf_types = list(leaf_types)
        in_channels = width if len(leaf_types) == 1 else {t: width for t in leaf_types}
        self.pos_types = positioned_types(pos_channels)
        self.predictor = HTEPredictor(in_channels, args.hidden, num_classes, heads=args.heads,
                                      head_channels=args.head_channels,
                                      pos_channels=pos_channels, attention=attention,
                                      dropout=args.dropout)

    def embed(self, input_ids: Tensor) -> Tensor:
        if self.embedding is None:
            return self.table[input_ids]
        return self.embedding(self.vocabulary[input_ids])

    def forward(self, batch, hierarchy: Hierarchy) -> Tensor:
        x = {t: self.embed(batch[t].input_ids) for t in self.leaf_types}
        if len(x) == 1:
            x = next(iter(x.values()))
        types = self.pos_types or [t for t in batch.node_types
                                   if t in hierarchy.node_slices]
        pos = {t: batch[t].hsa_pos for t in types}
        return self.predictor(x, hierarchy, pos)


def forward(model: TextModel, batch, hierarchy: Hierarchy) -> Tensor:
    return model(batch, hierarchy)


def training_vocabulary(samples: list, vocab_size: int) -> Tensor:
    r"""Maps every token id to 1..V for the ids seen in training, else 0."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    for data in samples:
        for t in data.node_types:
            if 'input_ids' in data[t]:
                seen[data[t].input_ids] = True
    out = torch.zeros(vocab_size, dtype=torch.long)
    out[seen] = torch.arange(1, int(seen.sum()) + 1)
    return out


def build_model(kind: str, leaves: str, width: int, samples: list, num_classes: int, args,
                table: Tensor = None, vocabulary: Tensor = None) -> TextModel:
    r"""The :class:`TextModel` of model :obj:`kind` (``'deepset'``: attention
    off) for samples like :obj:`samples` with encoder width :obj:`width`."""
    wide = argparse.Namespace(**{**vars(args), 'hidden': width})
    leaf_types, _ = hierarchy_node_types(samples[0].edge_types, samples[0].node_types)
    pos_channels = position_groups(samples[0], not args.shared_pos_projection, args.pos_dim)
    return TextModel(leaves, leaf_types, num_classes, wide, kind != 'deepset', pos_channels,
                     table=table, vocabulary=vocabulary)


def matched_width(build: Callable[[int], Module], target: int, heads: int, widest: int) -> int:
    r"""The encoder width (a multiple of :obj:`heads`, up to :obj:`widest`)
    whose model :obj:`build(width)` has the parameter count closest to
    :obj:`target`."""
    return min(range(heads, widest + 1, heads),
               key=lambda w: (abs(num_parameters(build(w)) - target), w))


def model_widths(args, datasets: Dict[str, list], num_classes: int, table: Tensor = None,
                 vocabulary: Tensor = None) -> Dict[tuple, int]:
    r"""``(leaves, model) -> encoder width``: ``args.hidden`` for every model,
    or with ``args.match_params`` the width matching HSA's parameter count for
    every other model (:obj:`datasets`: model -> its samples)."""
    widths = {(e, m): args.hidden for e in args.embeddings for m in args.models}
    if not args.match_params:
        return widths
    for leaves in args.embeddings:
        target = num_parameters(build_model('hsa', leaves, args.hidden, datasets['hsa'],
                                            num_classes, args, table, vocabulary))
        for kind in args.models:
            if kind != 'hsa':
                widths[leaves, kind] = matched_width(
                    lambda w, k=kind, e=leaves: build_model(k, e, w, datasets[k], num_classes,
                                                            args, table, vocabulary),
                    target, args.heads, 8 * args.hidden)
    return widths


def num_parameters(model: Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def num_tokens(data: HeteroData) -> int:
    return sum(int(data[t].num_nodes) for t in data.node_types if 'input_ids' in data[t])


