r"""Moving the attributes of an input ``Data`` into a hierarchy's HeteroData."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData

# attributes that describe the whole sample even when it has a single node
GRAPH_LEVEL_KEYS = {'y', 'smiles', 'name', 'text', 'label'}


def copy_attributes(data: Data, out: HeteroData, leaf_type: str, edge_type: str):
    r"""Node attributes of :obj:`data` go to :obj:`leaf_type`, its edges
    (``edge_index``, ``edge_attr``, ``edge_weight``) to ``(leaf_type,
    edge_type, leaf_type)``, everything else (``y``, ...) to the global store."""
    num_nodes = data.num_nodes
    for key, value in data.items():
        if key in ('edge_index', 'edge_attr', 'edge_weight'):
            out[leaf_type, edge_type, leaf_type][key] = value
        elif (key not in GRAPH_LEVEL_KEYS and isinstance(value, Tensor)
              and value.dim() > 0 and value.size(0) == num_nodes):
            out[leaf_type][key] = value
        elif key != 'num_nodes':
            out[key] = value
    out[leaf_type].num_nodes = num_nodes


def edge_index_of(data: Data) -> Tensor:
    r"""``data.edge_index``, or an empty ``[2, 0]`` index for a graph without
    edges."""
    if data.edge_index is None:
        return torch.empty(2, 0, dtype=torch.long)
    return data.edge_index
