r"""Hierarchies over graphs: nested communities."""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_branching, as_finite_float, as_int
from hsa_geo.transforms._attributes import copy_attributes, edge_index_of
from hsa_geo.transforms._base import HierarchyTransform
from hsa_geo.utils.partition import metis_levels, plm_levels

__all__ = ['GraphHierarchy', 'family_laplacian_pe']

METHODS = ('louvain', 'plm', 'spectral', 'metis')
# the arguments each method reads (besides pos_dim, seed and leaf_type)
_USES = {'louvain': ('num_levels', 'resolution'), 'plm': ('num_levels', 'resolution'),
         'spectral': ('branching', ), 'metis': ('num_parts', )}


# families up to this size are solved densely (batched eigh); larger ones by
# LOBPCG on their sparse Laplacian, whose cost grows with edges, not size^3
DENSE_FAMILY_MAX = 512
# dense Laplacians are built and solved this many entries at a time (128 MiB
# in float64): one reused working set instead of a buffer over all families
DENSE_CHUNK_ENTRIES = 2 ** 24


def family_laplacian_pe(edge_index: Tensor, parent: Tensor, dim: int) -> Tensor:
    r"""Position vectors of nodes inside their families: eigenvectors of the
    normalised Laplacian :math:`I - D^{-1/2} A D^{-1/2}` of the subgraph that
    each family induces (the non-trivial ones, smallest eigenvalues first,
    each with its largest-magnitude entry positive), zero-padded to
    :obj:`dim`.  Families of equal size up to 512 members are solved as
    batched dense eigen-decompositions in float64, a chunk of families at a
    time; larger families by LOBPCG on their sparse Laplacian
    (``scipy.sparse.linalg.lobpcg`` from a fixed start, at most 300
    iterations), so a family of 10^5 members costs about its edges times the
    iterations, not 10^15; the vectors of chain-like large families, whose
    smallest eigenvalues crowd together, are approximate.

    Args:
        edge_index (LongTensor): Edges between the nodes, ``[2, E]``.
        parent (LongTensor): Family (parent) of every node, ``[N]``.
        dim (int): Size of the vectors.
    """
    num = parent.numel()
    out = torch.zeros(num, dim)
    order = torch.argsort(parent, stable=True)
    sizes = torch.bincount(parent)
    rank = torch.empty(num, dtype=torch.long)
    starts = torch.cumsum(sizes, 0) - sizes
    rank[order] = torch.arange(num) - starts[parent[order]]
    # every inner edge in both directions, once, grouped by family size, then family
    row, col = edge_index
    same = (parent[row] == parent[col]) & (row != col)
    key = torch.unique(torch.cat([row[same] * num + col[same], col[same] * num + row[same]]))
    row, col = key // num, key % num
    num_families = int(sizes.numel())
    edge_key = sizes[parent[row]] * num_families + parent[row]
    edge_key, edge_order = torch.sort(edge_key, stable=True)
    row, col = row[edge_order], col[edge_order]

    def edges_of(size: int, first: int, last: int):
        r"""The edges of families first..last (ids) of one size."""
        lo = int(torch.searchsorted(edge_key, size * num_families + first))
        hi = int(torch.searchsorted(edge_key, size * num_families + last, right=True))
        return row[lo:hi], col[lo:hi]

    for size in torch.unique(sizes).tolist():
        if size < 2:
            continue
        families = (sizes == size).nonzero().view(-1)
        if size > DENSE_FAMILY_MAX:
            for family in families.tolist():
                r, c = edges_of(size, family, family)
                members = order[starts[family]:starts[family] + size]
                out[members] = _sparse_family_pe(rank[r], rank[c], size, dim)
            continue
        per_chunk = max(1, DENSE_CHUNK_ENTRIES // (size * size))
        for chunk in families.split(per_chunk):
            r, c = edges_of(size, int(chunk[0]), int(chunk[-1]))
            lap = torch.zeros(chunk.numel(), size, size, dtype=torch.float64)
            lap[torch.searchsorted(chunk, parent[r]), rank[r], rank[c]] = 1.0  # adjacency
            deg = lap.sum(-1)
            inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), 0)
            lap.mul_(inv.unsqueeze(2)).mul_(inv.unsqueeze(1)).neg_()
            lap.diagonal(dim1=1, dim2=2).add_(1.0)
            _, vec = torch.linalg.eigh(lap)
            del lap
            vec = _signed(vec[:, :, 1:dim + 1])                        # [F, size, k]
            members = order[(starts[chunk].unsqueeze(1) + torch.arange(size)).view(-1)]
            out[members, :vec.size(-1)] = vec.reshape(-1, vec.size(-1)).float()
    return out


def _signed(vec: Tensor) -> Tensor:
    r"""Eigenvectors (along dim -2) with their largest-magnitude entry positive."""
    peak = vec.abs().argmax(-2, keepdim=True)
    sign = torch.sign(vec.gather(-2, peak))
    return vec * torch.where(sign == 0, 1, sign)


def _sparse_family_pe(row: Tensor, col: Tensor, size: int, dim: int) -> Tensor:
    r"""The :obj:`dim` non-trivial Laplacian eigenvectors of one large family
    (local edges in both directions): the largest eigenvalues of
    :math:`I + D^{-1/2} A D^{-1/2}` (the same vectors, spectrum in [0, 2]),
    by LOBPCG, a block method that also finds repeated eigenvalues, from a
    fixed start (the trivial vector :math:`D^{1/2} \mathbf{1}` and seeded
    random columns), at most 300 iterations: on chain-like families, whose
    smallest eigenvalues crowd together, the vectors are approximate."""
    import warnings

    import numpy as np
    from scipy.sparse import coo_matrix, identity
    from scipy.sparse.linalg import lobpcg
    deg = torch.bincount(row, minlength=size).double()
    inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), 0)
    weight = (inv[row] * inv[col]).numpy()
    matrix = identity(size, format='csr') + coo_matrix(
        (weight, (row.numpy(), col.numpy())), shape=(size, size)).tocsr()
    start = np.random.default_rng(0).standard_normal((size, dim + 1))
    start[:, 0] = deg.sqrt().numpy()
    with warnings.catch_warnings():   # "not reaching the requested tolerance"
        warnings.simplefilter('ignore', UserWarning)
        values, vectors = lobpcg(matrix, start, largest=True, tol=1e-7, maxiter=300)
    vectors = torch.from_numpy(vectors[:, np.argsort(-values)].copy())
    vectors = _signed(vectors[:, 1:dim + 1])
    out = torch.zeros(size, dim)
    out[:, :vectors.size(1)] = vectors.float()
    return out


@functional_transform('graph_hierarchy')
class GraphHierarchy(HierarchyTransform):
    r"""Builds a hierarchy of nested clusters over the nodes of a graph
    (functional name: :obj:`graph_hierarchy`) with one of four methods:

    * ``'louvain'``: the levels of the Louvain method (networkx's
      ``louvain_partitions``, fixed by :obj:`seed`); :obj:`num_levels` of them
      are kept (evenly spaced when Louvain finds more, the coarsest repeated as
      pass-through levels when it finds fewer).  Follows the graph's
      communities; networkx code, for graphs up to about 10^4 nodes.
    * ``'plm'``: the Louvain levels for large graphs, from networkit's
      parallel Louvain method (:func:`~hsa_geo.utils.plm_levels`): one
      local-moving phase per level, the graph shrunk to its communities in
      between; levels of the same scale (community counts within a factor of
      2) merged, :obj:`num_levels` of the rest kept.  C++ code
      (``networkit``, the ``graphs`` extra); about 12 s at 10^6 nodes and
      10^7 edges (34 s with the position vectors).
    * ``'spectral'``: balanced windows of :obj:`branching` sizes over a
      locality-preserving order of the nodes: two smooth diffusion coordinates
      (power iteration of the normalised adjacency from a seeded start,
      orthonormalised) interleaved into a Morton code.  Vectorised torch,
      linear in the number of edges, for large graphs; the windows follow the
      graph's geometry, not its communities.
    * ``'metis'``: nested k-way partitions by METIS
      (:func:`~hsa_geo.utils.metis_levels`): the graph is cut into ``num_parts[0]`` parts, each part
      into ``num_parts[1]``, and so on, every cut minimising the edges between
      parts, so clusters follow the communities.  C code (``pymetis``, the
      ``graphs`` extra); a few seconds per level at 10^6 nodes.

    Every sample gets the same node types (``'community1'`` (finest) ...,
    ``'root'``), so graphs batch into one forest; components of a disconnected
    graph are never mixed by Louvain and simply sit side by side under the
    root.  Position vectors ``hsa_pos`` are Laplacian eigenvectors of the
    subgraph that each family induces (for clusters: of the graph between the
    child clusters), see :func:`family_laplacian_pe`.  The graph's own edges
    stay as ``('node', 'to', 'node')`` with their attributes.

    Each method reads only its own arguments (Louvain and PLM:
    :obj:`num_levels`, :obj:`resolution`; spectral: :obj:`branching`; METIS:
    :obj:`num_parts`); giving one the chosen method does not use raises a
    :class:`ValueError` instead of being silently ignored.

    Args:
        method (str, optional): ``'louvain'``, ``'plm'``, ``'spectral'`` or
            ``'metis'``. (default: ``'louvain'``)
        num_levels (int, optional): Cluster levels for Louvain and PLM
            (default: 2).  The spectral method and METIS have one level per
            entry of :obj:`branching` / :obj:`num_parts`; given with them, it
            must equal that length.
        branching (Sequence[int], optional): Window sizes for the spectral
            method, bottom-up. (default: ``(16, 16)``)
        resolution (float, optional): Louvain / PLM resolution. (default: 1.0)
        pos_dim (int, optional): Size of the position vectors. (default: 8)
        seed (int, optional): Seed of Louvain, PLM, METIS or the power
            iteration, at least 0. (default: 0)
        leaf_type (str, optional): The leaf node type; not ``'root'`` or one
            of the cluster types ``'community1'``, ... (default: ``'node'``)
        num_parts (Sequence[int], optional): Parts per cluster for METIS, from
            the root down (the root's children first). (default: ``(8, 8)``)
    """
    def __init__(self, method: str = 'louvain', num_levels: Optional[int] = None,
                 branching: Optional[Sequence[int]] = None,
                 resolution: Optional[float] = None, pos_dim: int = 8, seed: int = 0,
                 leaf_type: str = 'node', num_parts: Optional[Sequence[int]] = None):
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"'method' must be one of {METHODS}, got {method!r}")
        given = dict(num_levels=num_levels, branching=branching, resolution=resolution,
                     num_parts=num_parts)
        for name, value in given.items():
            if value is not None and name not in _USES[method] and name != 'num_levels':
                users = [m for m in METHODS if name in _USES[m]]
                raise ValueError(f"'{name}' is not used by method={method!r} (only by "
                                 f"{' and '.join(map(repr, users))}); method={method!r} "
                                 f"takes {', '.join(map(repr, _USES[method]))}")
        if num_levels is not None:
            num_levels = as_int(num_levels, 'num_levels', minimum=1)
        self.branching = as_branching((16, 16) if branching is None else branching)
        self.num_parts = as_branching((8, 8) if num_parts is None else num_parts,
                                      'num_parts')
        if method in ('spectral', 'metis'):   # one level per window size / cut
            name, sizes = ('branching', self.branching) if method == 'spectral' else \
                ('num_parts', self.num_parts)
            if num_levels is not None and num_levels != len(sizes):
                raise ValueError(f"'num_levels' ({num_levels}) conflicts with '{name}' "
                                 f"({sizes}): method={method!r} has one level per entry "
                                 f"of '{name}'; give '{name}' {num_levels} entries and "
                                 f"leave out 'num_levels'")
            num_levels = len(sizes)
        elif num_levels is None:
            num_levels = 2
        self.method, self.num_levels = method, num_levels
        self.resolution = as_finite_float(1.0 if resolution is None else resolution,
                                          'resolution', positive=True)
        self.pos_dim = as_int(pos_dim, 'pos_dim', minimum=1)
        self.seed = as_int(seed, 'seed', minimum=0)
        if not isinstance(leaf_type, str) or not leaf_type:
            raise TypeError(f"'leaf_type' must be a non-empty string (a node type name), "
                            f"got {leaf_type!r}")
        clusters = [f'community{i + 1}' for i in range(num_levels)] + ['root']
        if leaf_type in clusters:
            raise ValueError(f"'leaf_type' {leaf_type!r} is the name of one of the "
                             f"hierarchy's cluster types ({clusters}): choose another")
        self.leaf_type = leaf_type

    def config(self):
        if self.method in ('louvain', 'plm'):
            method = dict(num_levels=self.num_levels, resolution=self.resolution)
        elif self.method == 'spectral':
            method = dict(branching=self.branching)
        else:
            method = dict(num_parts=self.num_parts)
        return dict(method=self.method, **method, pos_dim=self.pos_dim, seed=self.seed,
                    leaf_type=self.leaf_type)

    def forward(self, data: Data) -> HeteroData:
        num_nodes = self.num_nodes_of(data, 'graph',
                                      'nodes: an empty graph has no hierarchy')
        edge_index = edge_index_of(data, num_nodes)
        labels = self.levels(edge_index, num_nodes)

        out = HeteroData()
        copy_attributes(data, out, self.leaf_type, 'to')
        types = [self.leaf_type] + [f'community{i + 1}' for i in range(self.num_levels)]
        types.append('root')
        member = torch.arange(num_nodes)      # current unit of every node
        unit_edges = edge_index
        for level, label in enumerate(labels + [None]):
            parent = torch.zeros(int(member.max()) + 1, dtype=torch.long)
            if label is not None:
                parent[member] = label
            child_type, parent_type = types[level], types[level + 1]
            out[parent_type].num_nodes = int(parent.max()) + 1
            out[child_type, 'in', parent_type].edge_index = torch.stack(
                [torch.arange(parent.numel()), parent])
            out[child_type].hsa_pos = family_laplacian_pe(unit_edges, parent, self.pos_dim)
            unit_edges = _coarsen(unit_edges, parent)
            member = parent[member]
        out['root'].hsa_pos = torch.zeros(1, self.pos_dim)
        return out

    def levels(self, edge_index: Tensor, num_nodes: int) -> List[Tensor]:
        r"""The cluster label of every node at every level of the hierarchy
        this builder makes of a graph, **finest first** (what :meth:`forward`
        turns into node types and positions), by the builder's method.

        Args:
            edge_index (LongTensor): The graph's edges ``[2, E]`` (either
                direction), node indices in ``[0, num_nodes)``.
            num_nodes (int): Number of nodes.
        """
        if self.method == 'louvain':
            return self._louvain_labels(edge_index, num_nodes)
        if self.method == 'plm':
            return plm_levels(edge_index, num_nodes, self.num_levels, self.resolution,
                              self.seed)
        if self.method == 'spectral':
            return _spectral_labels(edge_index, num_nodes, self.branching, self.seed)
        return metis_levels(edge_index, num_nodes, self.num_parts, self.seed)

    def _louvain_labels(self, edge_index: Tensor, num_nodes: int) -> List[Tensor]:
        graph = nx.Graph()
        graph.add_nodes_from(range(num_nodes))
        graph.add_edges_from(edge_index.t().tolist())
        levels = _pick_levels(list(nx.community.louvain_partitions(
            graph, resolution=self.resolution, seed=self.seed)), self.num_levels, num_nodes)
        labels = []
        for communities in levels:
            label = torch.empty(num_nodes, dtype=torch.long)
            for c, nodes in enumerate(sorted(communities, key=min)):
                label[list(nodes)] = c
            labels.append(label)
        return labels


def _coarsen(edge_index: Tensor, parent: Tensor) -> Tensor:
    r"""The edges between the parents of linked nodes, without duplicates and
    self-loops."""
    a, b = parent[edge_index[0]], parent[edge_index[1]]
    keep = a != b
    width = int(parent.max()) + 1
    key = torch.unique(a[keep] * width + b[keep])
    return torch.stack([key // width, key % width])


def _pick_levels(levels: List, count: int, num_nodes: int) -> List:
    r"""Exactly ``count`` nested partitions from Louvain's levels."""
    if not levels:
        levels = [[{i} for i in range(num_nodes)]]
    if len(levels) >= count:
        step = (len(levels) - 1) / max(1, count - 1)
        return [levels[round(i * step)] for i in range(count)] if count > 1 \
            else [levels[-1]]
    return levels + [levels[-1]] * (count - len(levels))


def _spectral_labels(edge_index: Tensor, num_nodes: int, branching: Sequence[int],
                     seed: int, iterations: int = 30) -> List[Tensor]:
    r"""Nested balanced windows over a Morton order of two diffusion
    coordinates of the nodes."""
    if num_nodes < 3:  # two diffusion coordinates need three nodes; any order is one
        return _windows(torch.arange(num_nodes), branching)
    row, col = edge_index
    keep = row != col
    row, col = torch.cat([row[keep], col[keep]]), torch.cat([col[keep], row[keep]])
    deg = torch.zeros(num_nodes).index_add_(0, row, torch.ones(row.numel()))
    norm = deg.clamp(min=1).rsqrt()
    order = torch.argsort(row, stable=True)
    row, col = row[order], col[order]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=num_nodes), 0)
    with warnings.catch_warnings():  # CSR support is 'beta' in torch
        warnings.simplefilter('ignore', UserWarning)
        adjacency = torch.sparse_csr_tensor(crow, col, norm[row] * norm[col],
                                            (num_nodes, num_nodes),
                                            check_invariants=False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 2, generator=gen)
    for _ in range(iterations):
        y = adjacency @ x + x                                # a lazy random walk
        y = y - y.mean(0, keepdim=True)
        x, _ = torch.linalg.qr(y)
    # ranks spread each coordinate uniformly over 16 bits, then interleave
    code = torch.zeros(num_nodes, dtype=torch.long)
    for axis in range(2):
        rank = torch.empty(num_nodes, dtype=torch.long)
        rank[torch.argsort(x[:, axis], stable=True)] = torch.arange(num_nodes)
        q = (rank * 65536) // num_nodes
        for bit in range(16):
            code |= ((q >> bit) & 1) << (2 * bit + axis)
    position = torch.empty(num_nodes, dtype=torch.long)
    position[torch.argsort(code, stable=True)] = torch.arange(num_nodes)
    return _windows(position, branching)


def _windows(position: Tensor, branching: Sequence[int]) -> List[Tensor]:
    r"""Nested windows of :obj:`branching` sizes over nodes at :obj:`position`."""
    labels, width = [], 1
    for b in branching:
        width *= b
        labels.append(position // width)
    return labels
