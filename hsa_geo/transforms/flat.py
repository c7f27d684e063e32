r"""The flat baseline of any hierarchy: its leaves under one root."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_even_dim, as_int
from hsa_geo.hierarchy import hierarchy_node_types
from hsa_geo.transforms._base import HierarchyTransform
from hsa_geo.transforms.sequence import as_pos_kind, grid_positions

__all__ = ['FlatHierarchy']


@functional_transform('flat_hierarchy')
class FlatHierarchy(HierarchyTransform):
    r"""Replaces a sample's hierarchy by its leaves under a single root
    (functional name: :obj:`flat_hierarchy`): HSA over the result is softmax
    attention over all leaves (the FSA baseline of the paper, Amizadeh et al.,
    NeurIPS 2025, Section 5), with the leaves, their features and the model
    unchanged.

    The input is a hierarchy ``HeteroData`` from any builder of this package
    (:class:`TextHierarchy`, :class:`MoleculeHierarchy`, :func:`nest`, ...).
    Leaf node types keep their attributes; cluster node types and the edges
    touching them are dropped; other edges between leaves (e.g. bonds) are
    kept; every leaf gets an edge ``(leaf_type, relation, 'root')``.  The
    leaves' ``hsa_pos`` become 1D-grid features of their index in the flat
    order (leaf types in ``data.node_types`` order, then node order), the
    positions of a flat sequence; ``root.hsa_pos`` is zero.

    Args:
        pos_dim (int, optional): Size of the position vectors. (default: 16)
        max_leaves (int, optional): Keep only the first :obj:`max_leaves`
            leaves in the flat order (e.g. ``512`` tokens, the truncation of a
            standard transformer); node attributes and leaf-to-leaf edges are
            cut accordingly, graph-level attributes are kept as they are.
            (default: :obj:`None`, keep all)
        relation (str, optional): Relation name of the node-to-parent edges.
            (default: :obj:`'in'`)
        pos_kind (str, optional): ``'sinusoidal'`` or ``'fourier'`` position
            features (see :func:`~hsa_geo.transforms.sequence.grid_positions`).
            (default: ``'sinusoidal'``)
    """
    def __init__(self, pos_dim: int = 16, max_leaves: Optional[int] = None,
                 relation: str = 'in', pos_kind: str = 'sinusoidal'):
        if max_leaves is not None:
            max_leaves = as_int(max_leaves, 'max_leaves', minimum=1)
        self.pos_dim, self.max_leaves, self.relation = as_even_dim(pos_dim), \
            max_leaves, relation
        self.pos_kind = as_pos_kind(pos_kind)

    def config(self):
        out = dict(pos_dim=self.pos_dim, max_leaves=self.max_leaves, relation=self.relation)
        if self.pos_kind != 'sinusoidal':  # the default stays out of cache keys
            out['pos_kind'] = self.pos_kind
        return out

    def forward(self, data: HeteroData) -> HeteroData:
        if not isinstance(data, HeteroData):
            raise TypeError(f"'data' must be a hierarchy HeteroData made by a builder of "
                            f"hsa_geo.transforms (e.g. TextHierarchy), got "
                            f"{type(data).__name__}; apply a builder first")
        links = [key for key in data.edge_types if key[1] == self.relation]
        if not links:
            raise ValueError(f"'data' has no edge type (child, '{self.relation}', "
                             f"parent); found {data.edge_types}")
        leaf_types, _ = hierarchy_node_types(data.edge_types, data.node_types,
                                             self.relation)
        budget = self.max_leaves
        kept = {}
        for t in leaf_types:
            num = int(data[t].num_nodes)
            kept[t] = num if budget is None else min(num, budget)
            budget = None if budget is None else budget - kept[t]
        leaf_types = [t for t in leaf_types if kept[t] > 0]

        out = HeteroData()
        for key, value in data.items():  # graph-level attributes
            out[key] = value
        offset = 0
        for t in leaf_types:
            store, num, keep = data[t], int(data[t].num_nodes), kept[t]
            for key, value in store.items():
                if key == 'num_nodes':
                    continue
                if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == num:
                    value = value[:keep]
                out[t][key] = value
            out[t].num_nodes = keep
            out[t].hsa_pos = grid_positions(torch.arange(offset, offset + keep),
                                            self.pos_dim, self.pos_kind)
            out[t, self.relation, 'root'].edge_index = torch.stack(
                [torch.arange(keep), torch.zeros(keep, dtype=torch.long)])
            offset += keep
        for src, rel, dst in data.edge_types:
            if rel == self.relation or not kept.get(src) or not kept.get(dst):
                continue
            store = data[src, rel, dst]
            edge_index = store.edge_index
            mask = (edge_index[0] < kept[src]) & (edge_index[1] < kept[dst])
            for key, value in store.items():
                if key == 'edge_index':
                    value = value[:, mask]
                elif isinstance(value, Tensor) and value.dim() > 0 \
                        and value.size(0) == mask.numel():
                    value = value[mask]
                out[src, rel, dst][key] = value
        out['root'].num_nodes = 1
        out['root'].hsa_pos = torch.zeros(1, self.pos_dim)
        return out
