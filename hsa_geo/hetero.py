r"""A hierarchy stored as a PyG heterogeneous graph, decoded into a parent
vector: what :meth:`hsa_geo.Hierarchy.from_hetero` reads.

Every node type that is the destination of a ``(child_type, relation,
parent_type)`` edge type is a cluster type, the other node types with such
edges are leaf types (:func:`hierarchy_node_types`, the one place this rule
is written).  Each edge goes from a node to its parent; the nodes are
numbered leaf types first, then cluster types.  With numba the edges become
the parent vector in one compiled pass (:func:`parent_from_edges` of
:mod:`hsa_geo.engine._numba_builder`); the PyTorch code below does the same
and names the fault whenever that pass finds one.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from hsa_geo._checks import as_bool, is_index_dtype
from hsa_geo.engine import numba_kernels

__all__ = ['hierarchy_node_types', 'parent_from_hetero']

Slices = Dict[str, Tuple[int, int]]


def hierarchy_node_types(edge_types, node_types, relation: str = 'in'
                         ) -> Tuple[List[str], List[str]]:
    r"""The leaf and cluster node types of a hierarchy stored as PyG
    heterogeneous graph, in the order of :obj:`node_types`: every node type
    that is the destination of a ``(child_type, relation, parent_type)`` edge
    type is a cluster type, the other node types with such edges are leaf
    types, node types without them are not part of the hierarchy.  The one
    place this rule is written (:meth:`Hierarchy.from_hetero` and
    :class:`~hsa_geo.transforms.FlatHierarchy` use it)."""
    links = [key for key in edge_types if key[1] == relation]
    clusters = {dst for _, _, dst in links}
    linked = clusters | {src for src, _, _ in links}
    ordered = list(node_types) + [t for key in links for t in (key[0], key[2])
                                  if t not in node_types]
    ordered = list(dict.fromkeys(t for t in ordered if t in linked))
    return ([t for t in ordered if t not in clusters], [t for t in ordered if t in clusters])


def parent_from_hetero(data, num_nodes_dict: Optional[Dict[str, int]] = None,
                       relation: str = 'in', root_leaves: bool = False
                       ) -> Tuple[Tensor, int, Slices, List[str], torch.device]:
    r"""The parent vector (CPU int64, our own), the number of leaves, the
    node slices, the leaf types and the device of a hierarchy stored as
    ``HeteroData`` (or an ``edge_index_dict`` with :obj:`num_nodes_dict`);
    the arguments are those of :meth:`hsa_geo.Hierarchy.from_hetero`."""
    root_leaves = as_bool(root_leaves, 'root_leaves')
    if isinstance(data, dict):
        edge_index_dict = data
        if num_nodes_dict is None:
            raise ValueError("'num_nodes_dict' is required when 'data' is an "
                             "edge_index_dict")
        node_types = list(num_nodes_dict)
    elif hasattr(data, 'edge_types') and hasattr(data, 'node_types'):
        # the stores directly: data[key] costs several microseconds a call
        edge_index_dict = {store._key: store.edge_index for store in data.edge_stores
                           if store._key[1] == relation and 'edge_index' in store}
        node_types = list(data.node_types)
        if num_nodes_dict is None:
            linked = {t for key in edge_index_dict for t in (key[0], key[2])}
            num_nodes_dict = {store._key: int(store.num_nodes or 0)
                              for store in data.node_stores if store._key in linked}
    else:
        raise TypeError(f"'data' must be a HeteroData hierarchy or an "
                        f"edge_index_dict, got {type(data).__name__}")
    links = {key: ei for key, ei in edge_index_dict.items() if key[1] == relation}
    if not links:
        found = list(data.edge_types) if not isinstance(data, dict) else list(data)
        raise ValueError(f"'data' has no edge type (child, {relation!r}, parent); "
                         f"found {found}")
    for key, ei in links.items():
        _check_link_form(key, ei, num_nodes_dict)
    # node types without any node-to-parent edge (e.g. a mesh's vertices)
    # are not part of the hierarchy
    leaf_types, cluster_types = hierarchy_node_types(links, node_types, relation)
    cluster = set(cluster_types)
    if not leaf_types:
        raise ValueError(f"every node type of the {relation!r} edges is the parent "
                         f"in some edge type ({sorted(cluster)}); expected at least "
                         f"one leaf node type")
    order = leaf_types + cluster_types
    slices, start = {}, 0
    for t in order:
        slices[t] = (start, start + int(num_nodes_dict[t]))
        start = slices[t][1]
    device = next(iter(links.values())).device
    num_leaves = slices[leaf_types[-1]][1]
    parent = _parent_compiled(links, slices, start, num_leaves, root_leaves)
    if parent is None:
        parent = _parent_torch(links, slices, order, start, num_leaves, relation,
                               root_leaves, num_nodes_dict)
    return parent, num_leaves, slices, leaf_types, device


def _parent_compiled(links, slices: Slices, num_nodes: int, num_leaves: int,
                     root_leaves: bool) -> Optional[Tensor]:
    r"""The parent vector in one numba pass, or :obj:`None` (numba missing,
    or a fault for :func:`_parent_torch` to name)."""
    if not numba_kernels.available():
        return None
    from hsa_geo.engine._numba_builder import parent_from_edges
    keys = list(links)
    edges = torch.cat([links[key] for key in keys], dim=1) if len(keys) > 1 \
        else links[keys[0]]
    edges = edges.cpu()
    if edges.dtype not in (torch.int64, torch.int32):
        edges = edges.long()
    edges = edges.contiguous()
    rows, end = [], 0
    for key in keys:  # per segment: its end, the child and the parent type's ranges
        end += links[key].size(1)
        (c0, c1), (p0, p1) = slices[key[0]], slices[key[2]]
        rows += [end, c0, c1 - c0, p0, p1 - p0]
    bounds = np.array(rows, dtype=np.int64).reshape(-1, 5).T.copy()
    parent, ok = parent_from_edges(edges.numpy(), *bounds, num_nodes, num_leaves,
                                   root_leaves)
    return torch.from_numpy(parent) if ok else None


def _parent_torch(links, slices: Slices, order: List[str], start: int, num_leaves: int,
                  relation: str, root_leaves: bool, num_nodes_dict) -> Tensor:
    r"""The parent vector by PyTorch ops; raises :class:`ValueError` naming the
    first fault."""
    for key, ei in links.items():
        _check_link_range(key, ei, num_nodes_dict)
    device = next(iter(links.values())).device
    parent = torch.full((start, ), -1, dtype=torch.long, device=device)
    out_degree = torch.zeros(start, dtype=torch.long, device=device)
    in_degree = torch.zeros(start, dtype=torch.long, device=device)
    for (src, _, dst), ei in links.items():
        child, par = ei[0].long() + slices[src][0], ei[1].long() + slices[dst][0]
        parent[child] = par
        out_degree.index_add_(0, child, torch.ones_like(child))
        in_degree.index_add_(0, par, torch.ones_like(par))

    def name(node: int) -> str:
        kind = next(t for t in order if slices[t][0] <= node < slices[t][1])
        return f"node {node - slices[kind][0]} of type {kind!r}"

    if bool((out_degree > 1).any()):
        node = int((out_degree > 1).nonzero()[0])
        hint = ''
        if any(int(e[1].numel()) == int(torch.unique(e[1]).numel()) and
               int(e[0].numel()) > int(torch.unique(e[0]).numel())
               for e in links.values()):
            hint = (f"; the edges look reversed: edges of relation {relation!r} go "
                    f"from the child (row 0) to its parent (row 1)")
        raise ValueError(f"{name(node)} has {int(out_degree[node])} parent edges; "
                         f"a hierarchy is a forest (one parent per node){hint}")
    childless = in_degree[num_leaves:] == 0
    if bool(childless.any()):
        node = int(childless.nonzero()[0]) + num_leaves
        raise ValueError(f"{name(node)} has no children; every cluster node needs "
                         f"at least one ({relation!r} edge pointing to it)")
    orphans = out_degree[:num_leaves] == 0
    if not root_leaves and bool(orphans.any()):
        node = int(orphans.nonzero()[0])
        raise ValueError(f"{name(node)} is a leaf without a parent edge "
                         f"({int(orphans.sum())} such leaves); pass root_leaves=True "
                         f"to make such leaves trees of their own")
    return parent.cpu()


def _check_link_form(key, edge_index, num_nodes_dict) -> None:
    r"""One ``(child, relation, parent)`` edge index: an integer ``[2, E]``
    tensor between node types of known size."""
    src, _, dst = key
    for t in (src, dst):
        if t not in num_nodes_dict:
            raise ValueError(f"edge type {key} names node type {t!r} whose number of "
                             f"nodes is unknown")
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'edge_index' of {key} must be a LongTensor [2, num_edges], "
                        f"got {type(edge_index).__name__}")
    if not is_index_dtype(edge_index):
        raise TypeError(f"'edge_index' of {key} must be an integer tensor, got dtype "
                        f"{edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' of {key} must have shape [2, num_edges], got "
                         f"{list(edge_index.shape)}")


def _check_link_range(key, edge_index, num_nodes_dict) -> None:
    r"""The rows of one edge index name existing children and parents."""
    src, _, dst = key
    for row, t, role in ((0, src, 'child'), (1, dst, 'parent')):
        count = int(num_nodes_dict[t])
        index = edge_index[row]
        if index.numel() and (bool((index < 0).any()) or bool((index >= count).any())):
            bad = index[(index < 0) | (index >= count)][0]
            raise ValueError(f"'edge_index' of {key} holds the {role} index "
                             f"{int(bad)}, but node type {t!r} has {count} nodes "
                             f"(expected 0..{count - 1})")
