r"""Moving the attributes of an input ``Data`` into a hierarchy's HeteroData,
and reading a graph's edges whatever form they come in."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData

from hsa_geo._checks import is_index_dtype

# Labels that describe the whole sample.  PyG's rule (the leading size equals
# the number of nodes) cannot tell a graph label [1, ...] of a single-node
# graph from a node label; these keys then stay graph-level, as in graph
# property prediction (OGB's molecules include single-atom ones).
GRAPH_LEVEL_KEYS = {'y', 'label'}
CONNECTIVITY_KEYS = ('edge_index', 'adj_t', 'adj')


def copy_attributes(data: Data, out: HeteroData, leaf_type: str, edge_type: str):
    r"""Moves every attribute of :obj:`data` into :obj:`out`, deciding by
    PyG's own rules (:meth:`Data.is_node_attr`, :meth:`Data.is_edge_attr`):
    node attributes go to :obj:`leaf_type`, the connectivity (``edge_index``,
    ``adj_t`` or ``adj``) and every edge attribute (``edge_attr``,
    ``edge_type``, ...) to ``(leaf_type, edge_type, leaf_type)``, the rest
    (graph labels, strings, ...) to the global store."""
    if not isinstance(data, Data):
        raise TypeError(f"'data' must be a torch_geometric.data.Data, got "
                        f"{type(data).__name__}")
    num_nodes = data.num_nodes
    edge_store = (leaf_type, edge_type, leaf_type)
    for key, value in data.items():
        if key == 'num_nodes':
            continue
        if key in CONNECTIVITY_KEYS or (data.is_edge_attr(key) and not _ambiguous(key, value)):
            out[edge_store][key] = value
        elif data.is_node_attr(key) and not (num_nodes == 1 and _ambiguous(key, value)):
            out[leaf_type][key] = value
        else:
            out[key] = value
    out[leaf_type].num_nodes = num_nodes


def _ambiguous(key: str, value) -> bool:
    return key in GRAPH_LEVEL_KEYS and isinstance(value, Tensor) and value.dim() > 0 \
        and value.size(0) == 1


def edge_index_of(data: Data, num_nodes: int) -> Tensor:
    r"""The edges of :obj:`data` as a plain ``[2, E]`` LongTensor, read from
    ``edge_index`` (a tensor or PyG's ``EdgeIndex``), ``adj_t`` (after
    :class:`~torch_geometric.transforms.ToSparseTensor`; torch sparse or
    ``torch_sparse.SparseTensor``) or ``adj``; an empty index for a graph
    without edges.  Raises on malformed or out-of-range indices."""
    from torch_geometric.utils import to_edge_index
    if getattr(data, 'edge_index', None) is not None:
        name, edge_index = 'edge_index', data.edge_index
        if isinstance(edge_index, Tensor) and type(edge_index) is not Tensor:
            edge_index = edge_index.as_subclass(Tensor)  # EdgeIndex -> plain indices
    elif getattr(data, 'adj_t', None) is not None:
        name, edge_index = 'adj_t', to_edge_index(data.adj_t)[0].flip(0)
    elif getattr(data, 'adj', None) is not None:
        name, edge_index = 'adj', to_edge_index(data.adj)[0]
    else:
        return torch.empty(2, 0, dtype=torch.long)
    if not isinstance(edge_index, Tensor) or not is_index_dtype(edge_index):
        raise TypeError(f"'data.{name}' must hold integer node indices, got "
                        f"{getattr(edge_index, 'dtype', type(edge_index).__name__)}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'data.{name}' must have shape [2, num_edges], got "
                         f"{list(edge_index.shape)}")
    edge_index = edge_index.long().cpu()
    bad = (edge_index < 0) | (edge_index >= num_nodes)
    if bool(bad.any()):
        raise ValueError(f"'data.{name}' holds node index {int(edge_index[bad][0])}, but "
                         f"the graph has {num_nodes} nodes (expected 0..{num_nodes - 1})")
    return edge_index
