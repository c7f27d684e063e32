r"""Node subsets of a hierarchy that are hierarchies again."""
from __future__ import annotations

from typing import Dict, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from hsa_geo.hierarchy import hierarchy_node_types

__all__ = ['hierarchy_subgraph']


def hierarchy_subgraph(data: HeteroData, leaves: Union[Tensor, Dict[str, Tensor]],
                       relation: str = 'in') -> HeteroData:
    r"""The part of a hierarchy (a ``HeteroData`` from a builder of
    :mod:`hsa_geo.transforms`) above a subset of its leaves, as a valid
    hierarchy: the kept leaves, every cluster with at least one kept leaf
    below it (clusters left without leaves are removed, so no internal node is
    childless), the child-to-parent edges between kept nodes, and every other
    edge type (e.g. the graph's own edges) restricted to edges between kept
    nodes, with their attributes.

    Node and edge attributes are sliced (PyG's ``is_node_attr`` /
    ``is_edge_attr``), graph-level attributes kept; each node type gets
    ``n_id``, the kept nodes' indices in :obj:`data`, and each edge type
    ``e_id``, as PyG's samplers do.  HSA over the result is HSA over the kept
    leaves with the hierarchy's blocks: a cluster left with one child is a
    pass-through node, exact.  Position vectors are kept as they are (computed
    on the full hierarchy).

    Args:
        data (HeteroData): The hierarchy.
        leaves (Tensor or Dict[str, Tensor]): The leaves to keep, as indices or
            a boolean mask; a dictionary over leaf types when there are
            several (types left out keep no leaves).
        relation (str, optional): The relation of child-to-parent edges.
            (default: :obj:`'in'`)
    """
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a hierarchy HeteroData, got {type(data).__name__}")
    leaf_types, cluster_types = hierarchy_node_types(data.edge_types, data.node_types,
                                                     relation)
    if not leaf_types:
        raise ValueError(f"'data' has no edge type (child, {relation!r}, parent); found "
                         f"{data.edge_types}")
    if isinstance(leaves, Tensor):
        if len(leaf_types) != 1:
            raise TypeError(f"'data' has leaf types {leaf_types}: pass 'leaves' as a dict "
                            f"over them")
        leaves = {leaf_types[0]: leaves}
    keep: Dict[str, Tensor] = {}
    for t in leaf_types + cluster_types:
        keep[t] = torch.zeros(int(data[t].num_nodes), dtype=torch.bool)
    for t, index in leaves.items():
        if t not in leaf_types:
            raise ValueError(f"'leaves' has type {t!r}, not a leaf type of 'data' "
                             f"({leaf_types})")
        keep[t][_as_index(index, keep[t].numel(), t)] = True
    links = [key for key in data.edge_types if key[1] == relation]
    for _ in range(len(keep)):  # up the tree: a parent of a kept node is kept
        for child, _, parent in links:
            child_index, parent_index = data[child, relation, parent].edge_index
            keep[parent][parent_index[keep[child][child_index]]] = True

    out = HeteroData()
    for key, value in data.items():
        out[key] = value
    new_index = {}
    for t in data.node_types:
        store = data[t]
        num = int(store.num_nodes)
        mask = keep.get(t, torch.ones(num, dtype=torch.bool))
        node_ids = mask.nonzero().view(-1)
        new_index[t] = torch.full((num, ), -1, dtype=torch.long)
        new_index[t][node_ids] = torch.arange(node_ids.numel())
        for key, value in store.items():
            if key == 'num_nodes':
                continue
            if isinstance(value, Tensor) and store.is_node_attr(key):
                value = value[node_ids]
            out[t][key] = value
        out[t].num_nodes = node_ids.numel()
        out[t].n_id = node_ids
    for edge_type in data.edge_types:
        src, _, dst = edge_type
        store = data[edge_type]
        a, b = store.edge_index
        alive = (new_index[src][a] >= 0) & (new_index[dst][b] >= 0)
        edge_ids = alive.nonzero().view(-1)
        for key, value in store.items():
            if key == 'edge_index':
                value = torch.stack([new_index[src][a[edge_ids]], new_index[dst][b[edge_ids]]])
            elif isinstance(value, Tensor) and store.is_edge_attr(key):
                value = value[edge_ids]
            out[edge_type][key] = value
        out[edge_type].e_id = edge_ids
    return out


def _as_index(index: Tensor, num: int, node_type: str) -> Tensor:
    if not isinstance(index, Tensor):
        index = torch.as_tensor(index)
    if index.dtype == torch.bool:
        if index.numel() != num:
            raise ValueError(f"'leaves[{node_type!r}]' is a mask of {index.numel()} entries "
                             f"but there are {num} such leaves")
        return index
    if index.dtype not in (torch.long, torch.int, torch.int32, torch.int16):
        raise TypeError(f"'leaves[{node_type!r}]' must be indices or a boolean mask, got "
                        f"dtype {index.dtype}")
    index = index.long().view(-1)
    if index.numel() and (index.min() < 0 or index.max() >= num):
        raise ValueError(f"'leaves[{node_type!r}]' holds indices outside 0..{num - 1}")
    return index
