r"""Several modalities of one sample under one root."""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_int
from hsa_geo.transforms._base import HierarchyTransform

__all__ = ['MultiModalHierarchy', 'nest']


def nest(parts: Dict[str, HeteroData], pos_dim: int, relation: str = 'in') -> HeteroData:
    r"""Puts the hierarchies of several modalities under one root whose
    children (the modalities' roots) form a key-value set.

    Node types are renamed ``'{modality}_{type}'`` (so each modality keeps its
    own leaf types and projections); the modalities' root node types get an
    edge to the new node type ``'root'`` and, as ``hsa_pos``, the one-hot code
    of their modality (in the order of :obj:`parts`, zero-padded to
    :obj:`pos_dim`): through a layer's position projection this is a learned
    embedding per modality key.  Global attributes (``y``, ...) of the parts
    are kept, the first occurrence winning."""
    if len(parts) > pos_dim:
        raise ValueError(f"'pos_dim' ({pos_dim}) must be at least the number of "
                         f"modalities ({len(parts)})")
    out = HeteroData()
    for code, (name, part) in enumerate(parts.items()):
        targets = {dst for (_, rel, dst) in part.edge_types if rel == relation}
        sources = {src for (src, rel, _) in part.edge_types if rel == relation}
        tops = [t for t in part.node_types if t in targets and t not in sources]
        if len(tops) != 1 or part[tops[0]].num_nodes != 1:
            raise ValueError(f"modality {name!r} must be one tree with a single root "
                             f"node type holding one node, found {tops}")
        for node_type in part.node_types:
            store = out[f'{name}_{node_type}']
            for key, value in part[node_type].items():
                store[key] = value
        for src, rel, dst in part.edge_types:
            for key, value in part[src, rel, dst].items():
                out[f'{name}_{src}', rel, f'{name}_{dst}'][key] = value
        top = f'{name}_{tops[0]}'
        out[top, relation, 'root'].edge_index = torch.zeros(2, 1, dtype=torch.long)
        code_vec = torch.zeros(1, pos_dim)
        code_vec[0, code] = 1
        out[top].hsa_pos = code_vec
        for key, value in part.items():  # global attributes
            if key not in out:
                out[key] = value
    out['root'].num_nodes = 1
    out['root'].hsa_pos = torch.zeros(1, pos_dim)
    return out


@functional_transform('multi_modal_hierarchy')
class MultiModalHierarchy(HierarchyTransform):
    r"""Applies one hierarchy builder per modality to a sample and nests the
    results under one root (functional name: :obj:`multi_modal_hierarchy`),
    see :func:`nest`.  E.g. a molecule's graph and its name::

        MultiModalHierarchy({
            'mol': MoleculeHierarchy(pos_dim=8),
            'name': lambda d: TextHierarchy(pos_dim=8)(Data(text=d.name)),
        }, pos_dim=8)

    Args:
        builders (Dict[str, Callable]): Modality name -> function from the
            input :class:`~torch_geometric.data.Data` to that modality's
            hierarchy (a ``HeteroData`` with one root).
        pos_dim (int): Size of the modality codes (at least the number of
            modalities; usually the builders' position size).
    """
    def __init__(self, builders: Dict[str, Callable[[Data], HeteroData]], pos_dim: int):
        if not isinstance(builders, dict) or not builders:
            raise ValueError(f"'builders' must be a non-empty dict of modality name -> "
                             f"builder, got {builders!r}")
        for name, build in builders.items():
            if not callable(build):
                raise TypeError(f"'builders[{name!r}]' must be callable (a builder or a "
                                f"function Data -> HeteroData), got {type(build).__name__}")
        self.builders, self.pos_dim = dict(builders), as_int(pos_dim, 'pos_dim', minimum=1)
        if len(self.builders) > self.pos_dim:
            raise ValueError(f"'pos_dim' ({self.pos_dim}) must be at least the number of "
                             f"modalities ({len(self.builders)})")

    def config(self):
        return dict(builders=self.builders, pos_dim=self.pos_dim)

    def forward(self, data: Data) -> HeteroData:
        return nest({name: build(data) for name, build in self.builders.items()},
                    self.pos_dim)
