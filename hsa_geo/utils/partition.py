r"""Nested graph partitions with METIS (Karypis and Kumar, SIAM J. Sci.
Comput. 1998), the cuts of Cluster-GCN, made hierarchical."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from hsa_geo._checks import as_branching

__all__ = ['metis_levels', 'symmetric_csr']


def symmetric_csr(edge_index: Tensor, num_nodes: int):
    r"""``(rowptr, col)`` of the undirected simple graph of :obj:`edge_index`
    (both directions, self-loops and duplicates removed), columns sorted."""
    row, col = edge_index
    keep = row != col
    row, col = torch.cat([row[keep], col[keep]]), torch.cat([col[keep], row[keep]])
    key = torch.unique(row * num_nodes + col)      # sorted by row, then column
    row, col = key // num_nodes, key % num_nodes
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=num_nodes), 0)
    return rowptr, col


def metis_levels(edge_index: Tensor, num_nodes: int, num_parts: Sequence[int],
                 seed: int = 0) -> List[Tensor]:
    r"""Nested k-way partitions of a graph, top-down: METIS cuts the graph into
    ``num_parts[0]`` parts, then every part (the subgraph it induces) into
    ``num_parts[1]`` parts, and so on.  Returns one label vector per level,
    **finest first** (the order of :class:`~hsa_geo.transforms.GraphHierarchy`),
    labels contiguous from 0 and nested: nodes with one label at a level share
    their label at every coarser level.

    A part with no more nodes than the parts asked of it is split into single
    nodes; METIS may leave a part empty, which just goes unused.  Needs
    ``pymetis`` (``pip install pymetis``, the ``graphs`` extra).

    Args:
        edge_index (LongTensor): The graph's edges ``[2, E]`` (either direction).
        num_nodes (int): Number of nodes.
        num_parts (Sequence[int]): Parts per cluster at each level, from the
            top down, each at least 2.
        seed (int, optional): METIS's random seed. (default: :obj:`0`)
    """
    try:
        import pymetis
    except ImportError as error:
        raise ModuleNotFoundError("GraphHierarchy(method='metis') needs pymetis: pip "
                                  "install pymetis (or the 'graphs' extra)") from error
    num_parts = as_branching(num_parts, 'num_parts')
    rowptr, col = symmetric_csr(edge_index, num_nodes)
    row = torch.repeat_interleave(torch.arange(num_nodes), rowptr.diff())
    options = pymetis.Options(seed=seed)
    label = torch.zeros(num_nodes, dtype=torch.long)
    labels = []
    for k in num_parts:
        # the subgraphs every current part induces, each as a local CSR
        order = torch.argsort(label, stable=True)
        sizes = torch.bincount(label)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.empty(num_nodes, dtype=torch.long)
        rank[order] = torch.arange(num_nodes) - starts[label[order]]
        inside = label[row] == label[col]
        r, c = row[inside], col[inside]
        edge_order = torch.argsort(label[r] * num_nodes + rank[r], stable=True)
        r, c = r[edge_order], c[edge_order]
        local_col = rank[c].numpy().astype(np.int32)
        degree = torch.bincount(r, minlength=num_nodes)[order]
        edge_starts = torch.cumsum(torch.bincount(label[r], minlength=sizes.numel()), 0)
        part = torch.empty(num_nodes, dtype=torch.long)
        for p, (size, start) in enumerate(zip(sizes.tolist(), starts.tolist())):
            members = order[start:start + size]
            if size <= k:
                part[members] = torch.arange(size)
                continue
            first = int(edge_starts[p - 1]) if p else 0
            ptr = np.zeros(size + 1, dtype=np.int32)
            np.cumsum(degree[start:start + size].numpy(), out=ptr[1:])
            adjacency = pymetis.CSRAdjacency(ptr, local_col[first:first + int(ptr[-1])])
            _, assignment = pymetis.part_graph(k, adjacency, options=options)
            part[members] = torch.as_tensor(np.asarray(assignment), dtype=torch.long)
        # contiguous labels of (parent part, sub-part), in the parents' order
        label = torch.unique(label * max(num_parts) + part, return_inverse=True)[1]
        labels.append(label)
    return labels[::-1]
