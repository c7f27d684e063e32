r"""Nested graph partitions for hierarchies of large graphs: top-down k-way
cuts with METIS (Karypis and Kumar, SIAM J. Sci. Comput. 1998; the cuts of
Cluster-GCN, made hierarchical) and bottom-up Louvain levels with networkit's
parallel Louvain method (PLM; Staudt and Meyerhenke, IEEE TPDS 2016)."""
from __future__ import annotations

import warnings
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import remove_self_loops, to_undirected
from torch_geometric.utils.sparse import index2ptr

from hsa_geo._checks import as_branching, as_finite_float, as_int, is_index_dtype

__all__ = ['metis_levels', 'plm_levels', 'symmetric_csr']


def _checked_graph(edge_index, num_nodes) -> tuple:
    r"""``(edge_index, num_nodes)`` checked: a ``[2, E]`` integer tensor with
    indices in ``[0, num_nodes)``."""
    num_nodes = as_int(num_nodes, 'num_nodes', minimum=1)
    if not isinstance(edge_index, Tensor):
        kind = type(edge_index)
        kind = kind.__name__ if kind.__module__ == 'builtins' else \
            f'{kind.__module__}.{kind.__name__}'
        raise TypeError(f"'edge_index' must be an integer tensor of shape [2, num_edges], "
                        f"got a {kind} (convert it with torch.as_tensor)")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise TypeError(f"'edge_index' must be an integer tensor of shape [2, num_edges], "
                        f"got shape {list(edge_index.shape)}")
    if not is_index_dtype(edge_index):
        raise TypeError(f"'edge_index' must be an integer tensor of shape [2, num_edges], "
                        f"got dtype {edge_index.dtype}")
    edge_index = edge_index.long().cpu()
    if edge_index.numel() and (int(edge_index.min()) < 0 or
                               int(edge_index.max()) >= num_nodes):
        raise ValueError(f"'edge_index' holds node indices in [{int(edge_index.min())}, "
                         f"{int(edge_index.max())}] but 'num_nodes' is {num_nodes}")
    return edge_index, num_nodes


def symmetric_csr(edge_index: Tensor, num_nodes: int):
    r"""``(rowptr, col)`` of the undirected simple graph of :obj:`edge_index`
    (both directions, self-loops and duplicates removed), columns sorted:
    PyG's :func:`~torch_geometric.utils.remove_self_loops`,
    :func:`~torch_geometric.utils.to_undirected` (which sorts by row, then
    column, and coalesces) and :func:`~torch_geometric.utils.index2ptr`."""
    edge_index, _ = remove_self_loops(edge_index)
    row, col = to_undirected(edge_index, num_nodes=num_nodes)
    return index2ptr(row, num_nodes), col


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
        seed (int, optional): METIS's random seed, at least 0.
            (default: :obj:`0`)
    """
    num_parts = as_branching(num_parts, 'num_parts')
    edge_index, num_nodes = _checked_graph(edge_index, num_nodes)
    seed = as_int(seed, 'seed', minimum=0)
    try:
        import pymetis
    except ImportError as error:
        raise ModuleNotFoundError("GraphHierarchy(method='metis') needs pymetis: pip "
                                  "install pymetis (or the 'graphs' extra)") from error
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


def plm_levels(edge_index: Tensor, num_nodes: int, num_levels: int, resolution: float = 1.0,
               seed: int = 0) -> List[Tensor]:
    r"""Nested communities of a graph, bottom-up: the levels of the Louvain
    method (Blondel et al., 2008) computed by networkit's PLM.  Each level is
    one local-moving phase on the graph of the level below (the first on the
    graph itself), which then shrinks to one node per community (edge weights
    summed, inner edges kept as self-loops) for the next, until a phase merges
    nothing.  Returns :obj:`num_levels` label vectors, **finest first**, labels
    contiguous from 0 and nested.

    Louvain does not choose how many levels it finds.  Consecutive levels
    whose community counts differ by less than a factor of 2 are one scale
    (the later phases of Louvain mostly polish the partition above): only the
    coarser is kept.  Of the distinct scales, :obj:`num_levels` evenly spaced
    ones are returned (the coarsest always among them), or, with fewer, the
    coarsest repeated (pass-through levels of the hierarchy).

    Runs on one thread, which makes the result a function of the graph
    alone (networkit's parallel local moving depends on thread timing);
    about 12 s for a graph of 10^6 nodes and 10^7 edges.  Needs ``networkit``
    (``pip install networkit``, the ``graphs`` extra).

    Args:
        edge_index (LongTensor): The graph's edges ``[2, E]`` (either direction;
            repeats and self-loops are ignored).
        num_nodes (int): Number of nodes.
        num_levels (int): Number of levels returned.
        resolution (float, optional): Modularity resolution :math:`\gamma`:
            larger values give smaller communities. (default: :obj:`1.0`)
        seed (int, optional): networkit's random seed, at least 0.
            (default: :obj:`0`)
    """
    edge_index, num_nodes = _checked_graph(edge_index, num_nodes)
    num_levels = as_int(num_levels, 'num_levels', minimum=1)
    resolution = as_finite_float(resolution, 'resolution', positive=True)
    seed = as_int(seed, 'seed', minimum=0)     # networkit's seed is unsigned
    try:
        with warnings.catch_warnings():  # networkit imports IPython's deprecated names
            warnings.simplefilter('ignore', DeprecationWarning)
            import networkit as nk
    except ImportError as error:
        raise ModuleNotFoundError("GraphHierarchy(method='plm') needs networkit: pip "
                                  "install networkit (or the 'graphs' extra)") from error
    from scipy.sparse import csr_matrix
    threads = nk.getMaxNumberOfThreads()
    nk.setNumberOfThreads(1)
    nk.engineering.setSeed(seed, False)
    try:
        row, col = edge_index
        keep = row != col
        low, high = torch.minimum(row[keep], col[keep]), torch.maximum(row[keep], col[keep])
        key = torch.unique(low * num_nodes + high)    # each edge once, sorted: a CSR
        rowptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(torch.bincount(key // num_nodes, minlength=num_nodes).numpy(),
                  out=rowptr[1:])
        upper = csr_matrix((np.ones(key.numel()), (key % num_nodes).numpy(), rowptr),
                           shape=(num_nodes, num_nodes))
        graph = nk.graph.GraphFromCsr(upper, directed=False, weighted=True)
        member = np.arange(num_nodes)
        scales, counts = [], []
        while graph.numberOfNodes() > 1:
            phase = nk.community.PLM(graph, refine=False, gamma=resolution, turbo=True,
                                     recurse=False)
            phase.run()
            partition = phase.getPartition()    # kept alive: the coarsening reads it
            partition.compact()
            coarsening = nk.coarsening.ParallelPartitionCoarsening(graph, partition)
            coarsening.run()
            coarse = coarsening.getCoarseGraph()
            if coarse.numberOfNodes() == graph.numberOfNodes():
                break                                  # nothing merged: Louvain is done
            member = np.asarray(coarsening.getFineToCoarseNodeMapping(),
                                dtype=np.int64)[member]
            if counts and 2 * coarse.numberOfNodes() > counts[-1]:
                scales.pop()                           # the same scale, polished
                counts.pop()
            scales.append(torch.from_numpy(member.copy()))
            counts.append(coarse.numberOfNodes())
            graph = coarse
    finally:
        nk.setNumberOfThreads(threads)
    if not scales:                                     # nothing to merge: every node alone
        scales = [torch.arange(num_nodes)]
    if len(scales) > num_levels:
        step = (len(scales) - 1) / max(1, num_levels - 1)
        scales = [scales[round(i * step)] for i in range(num_levels)] if num_levels > 1 \
            else [scales[-1]]
    return scales + [scales[-1]] * (num_levels - len(scales))
