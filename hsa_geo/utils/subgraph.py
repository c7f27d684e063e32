r"""Node subsets of a hierarchy that are hierarchies again."""
from __future__ import annotations

from typing import Dict, List, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from hsa_geo.hierarchy import hierarchy_node_types

__all__ = ['hierarchy_subgraph']


def hierarchy_subgraph(data: HeteroData,
                       leaves: Union[Tensor, List[int], Dict[str, Union[Tensor, List[int]]]],
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
        leaves (Tensor or List[int] or Dict[str, Tensor]): The leaves to keep,
            as distinct indices (a 1-D integer tensor or a list of ints, as
            PyG's :func:`~torch_geometric.utils.subgraph` takes) or a 1-D
            boolean mask; a dictionary over leaf types when there are several
            (types left out keep no leaves).  At least one leaf must be kept.
        relation (str, optional): The relation of child-to-parent edges.
            (default: :obj:`'in'`)
    """
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a hierarchy HeteroData, got {type(data).__name__}")
    if not isinstance(relation, str) or not relation:
        raise TypeError(f"'relation' must be a non-empty string (the relation of the "
                        f"child-to-parent edges), got {relation!r}")
    leaf_types, cluster_types = hierarchy_node_types(data.edge_types, data.node_types,
                                                     relation)
    if not leaf_types:
        raise ValueError(f"'data' has no edge type (child, {relation!r}, parent); found "
                         f"{data.edge_types}")
    if not isinstance(leaves, dict):
        if not isinstance(leaves, _SELECTION):
            raise TypeError(f"'leaves' must be a Tensor of leaf indices or a bool mask "
                            f"(a list of ints works too), or a dict of those over the leaf "
                            f"types, got {type(leaves).__name__}")
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
    if not any(bool(keep[t].any()) for t in leaf_types):
        raise ValueError("'leaves' selects no leaf: a hierarchy needs at least one (an "
                         "empty subset has no tree)")
    links = [key for key in data.edge_types if key[1] == relation]
    changed = True
    while changed:  # up the tree: a parent of a kept node is kept (a type may
        changed = False  # nest in itself, so until nothing changes)
        for child, _, parent in links:
            child_index, parent_index = data[child, relation, parent].edge_index
            above = parent_index[keep[child][child_index]]
            if not bool(keep[parent][above].all()):
                keep[parent][above] = True
                changed = True

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


# what 'leaves' (or each of its dict's values) may be: PyG's subgraph
# utilities take a Tensor or a list of ints
_SELECTION = (Tensor, list, tuple, np.ndarray)


def _as_index(index, num: int, node_type: str) -> Tensor:
    r"""The kept leaves of one type as distinct indices or a mask, checked."""
    name = f'leaves[{node_type!r}]'
    if not isinstance(index, _SELECTION):
        raise TypeError(f"'{name}' must be a Tensor of leaf indices or a bool mask (or a "
                        f"list of ints), got {type(index).__name__}")
    if not isinstance(index, Tensor):
        if len(index) == 0:
            index = torch.zeros(0, dtype=torch.long)
        else:
            try:
                index = torch.as_tensor(index)
            except (TypeError, ValueError, RuntimeError) as error:
                raise TypeError(f"'{name}' must be a flat list of leaf indices (ints) or "
                                f"bools: {error}") from None
    if index.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional (indices or a mask over the "
                         f"leaves), got shape {list(index.shape)}")
    if index.dtype == torch.bool:
        if index.numel() != num:
            raise ValueError(f"'{name}' is a mask of {index.numel()} entries "
                             f"but there are {num} such leaves")
        return index.cpu()
    if index.dtype not in (torch.long, torch.int, torch.int32, torch.int16):
        raise TypeError(f"'{name}' must be indices or a boolean mask, got "
                        f"dtype {index.dtype}")
    index = index.long().cpu()
    if index.numel() == 0:
        return index
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= num:
        raise ValueError(f"'{name}' holds indices outside 0..{num - 1} (found "
                         f"{low if low < 0 else high})")
    unique, counts = torch.unique(index, return_counts=True)
    if bool((counts > 1).any()):
        repeated = int(unique[counts > 1][0])
        if low >= 0 and high <= 1:
            raise ValueError(f"'{name}' holds only 0s and 1s, index {repeated} more than "
                             f"once: a mask given as integers?  Pass a bool mask "
                             f"(e.g. mask.bool()) or distinct indices")
        raise ValueError(f"'{name}' holds index {repeated} more than once; pass each "
                         f"leaf once")
    return index
