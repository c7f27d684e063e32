r"""Hierarchies over graphs: nested communities."""
from __future__ import annotations

from typing import List

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from hsa_geo.transforms._attributes import copy_attributes

__all__ = ['GraphHierarchy', 'family_laplacian_pe']


def family_laplacian_pe(edge_index: Tensor, parent: Tensor, dim: int) -> Tensor:
    r"""Position vectors of nodes inside their families: eigenvectors of the
    normalised Laplacian of the subgraph that each family induces (the
    non-trivial ones, smallest eigenvalues first, a deterministic sign),
    zero-padded to :obj:`dim`.  Families of equal size are solved as one
    batched eigen-decomposition.

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
    row, col = edge_index
    same = (parent[row] == parent[col]) & (row != col)
    row, col = row[same], col[same]
    for size in torch.unique(sizes).tolist():
        if size < 2:
            continue
        families = (sizes == size).nonzero().view(-1)
        local = torch.full((int(sizes.numel()), ), -1, dtype=torch.long)
        local[families] = torch.arange(families.numel())
        adj = torch.zeros(families.numel(), size, size, dtype=torch.float64)
        keep = local[parent[row]] >= 0
        f = local[parent[row[keep]]]
        adj[f, rank[row[keep]], rank[col[keep]]] = 1
        adj = torch.maximum(adj, adj.transpose(1, 2))
        deg = adj.sum(-1)
        inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), 0)
        lap = torch.eye(size, dtype=torch.float64) - inv.unsqueeze(2) * adj * inv.unsqueeze(1)
        _, vec = torch.linalg.eigh(lap)
        vec = vec[:, :, 1:dim + 1]                                  # [F, size, k]
        peak = vec.abs().argmax(1, keepdim=True)
        sign = torch.sign(vec.gather(1, peak))
        vec = vec * torch.where(sign == 0, 1, sign)
        members = (local[parent] >= 0).nonzero().view(-1)
        out[members, :vec.size(-1)] = vec[local[parent[members]], rank[members]].float()
    return out


@functional_transform('graph_hierarchy')
class GraphHierarchy(BaseTransform):
    r"""Builds a hierarchy of nested communities over the nodes of a graph
    (functional name: :obj:`graph_hierarchy`) from the levels of the Louvain
    method (networkx's ``louvain_partitions``, fixed by :obj:`seed`).

    Every sample gets exactly :obj:`num_levels` community levels (node types
    ``'community1'`` (finest) ... plus ``'root'``): when Louvain finds more
    levels, evenly spaced ones are kept (they stay nested); when it finds
    fewer, the coarsest is repeated as pass-through levels.  Components of a
    disconnected graph become separate subtrees under the root.  Position
    vectors ``hsa_pos`` are Laplacian eigenvectors of the subgraph each family
    induces (for communities: of the graph between the child communities),
    see :func:`family_laplacian_pe`.  The graph's own edges stay as
    ``('node', 'to', 'node')`` with their attributes.

    Args:
        num_levels (int, optional): Community levels. (default: 2)
        resolution (float, optional): Louvain resolution. (default: 1.0)
        pos_dim (int, optional): Size of the position vectors. (default: 8)
        seed (int, optional): Louvain seed. (default: 0)
        leaf_type (str, optional): The leaf node type. (default: ``'node'``)
    """
    def __init__(self, num_levels: int = 2, resolution: float = 1.0, pos_dim: int = 8,
                 seed: int = 0, leaf_type: str = 'node'):
        if num_levels < 1:
            raise ValueError(f"'num_levels' must be at least 1, got {num_levels}")
        self.num_levels, self.resolution = num_levels, resolution
        self.pos_dim, self.seed, self.leaf_type = pos_dim, seed, leaf_type

    def forward(self, data: Data) -> HeteroData:
        num_nodes = data.num_nodes
        if not num_nodes:
            raise ValueError("'data' has no nodes: an empty graph has no hierarchy")
        edge_index = data.edge_index if data.edge_index is not None else \
            torch.empty(2, 0, dtype=torch.long)
        graph = nx.Graph()
        graph.add_nodes_from(range(num_nodes))
        graph.add_edges_from(edge_index.t().tolist())
        levels = [p for p in nx.community.louvain_partitions(
            graph, resolution=self.resolution, seed=self.seed)]
        levels = _pick_levels(levels, self.num_levels, num_nodes)

        out = HeteroData()
        copy_attributes(data, out, self.leaf_type, 'to')
        types = [self.leaf_type] + [f'community{i + 1}' for i in range(self.num_levels)]
        types.append('root')
        member = torch.arange(num_nodes)      # current unit of every node
        unit_edges = edge_index
        for level, communities in enumerate(levels + [None]):
            if communities is None:           # the root
                parent = torch.zeros(int(member.max()) + 1, dtype=torch.long)
            else:
                label = torch.empty(num_nodes, dtype=torch.long)
                for c, nodes in enumerate(sorted(communities, key=min)):
                    label[list(nodes)] = c
                parent = torch.zeros(int(member.max()) + 1, dtype=torch.long)
                parent[member] = label
            child_type, parent_type = types[level], types[level + 1]
            out[parent_type].num_nodes = int(parent.max()) + 1
            out[child_type, 'in', parent_type].edge_index = torch.stack(
                [torch.arange(parent.numel()), parent])
            out[child_type].hsa_pos = family_laplacian_pe(unit_edges, parent, self.pos_dim)
            unit_edges = torch.unique(parent[unit_edges], dim=1)
            member = parent[member]
        out['root'].hsa_pos = torch.zeros(1, self.pos_dim)
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_levels={self.num_levels})'


def _pick_levels(levels: List, count: int, num_nodes: int) -> List:
    r"""Exactly ``count`` nested partitions from Louvain's levels."""
    if not levels:
        levels = [[{i} for i in range(num_nodes)]]
    if len(levels) >= count:
        step = (len(levels) - 1) / max(1, count - 1)
        return [levels[round(i * step)] for i in range(count)] if count > 1 \
            else [levels[-1]]
    return levels + [levels[-1]] * (count - len(levels))
