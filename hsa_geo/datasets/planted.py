r"""SYNTHETIC graphs with a planted hierarchy of communities, for measuring
how well a hierarchy builder recovers communities it was not told about."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import as_branching, as_int

__all__ = ['planted_hierarchy_graph']


def planted_hierarchy_graph(num_nodes: int, avg_degree: int, num_parts: Sequence[int],
                            within: Sequence[float], seed: int = 0
                            ) -> Tuple[Tensor, List[Tensor]]:
    r"""A **SYNTHETIC** hierarchical stochastic block graph: the nodes (in a
    random order) are split into ``num_parts[0]`` blocks, each block into
    ``num_parts[1]``, and so on (sizes as equal as integer division allows);
    each of the ``num_nodes * avg_degree / 2`` undirected edges draws its
    source uniformly and its target uniformly inside the source's block at
    level :math:`l` with probability ``within[l]`` (finest level first), else
    anywhere.

    Returns ``(edge_index, labels)``: the edges ``[2, E]`` (one direction,
    self-loops and repeats possible, as drawn) and the planted block of every
    node at each level, **finest first** (the order of
    :func:`hsa_geo.utils.metis_levels`).

    Args:
        num_nodes (int): Number of nodes.
        avg_degree (int): Mean degree.
        num_parts (Sequence[int]): Blocks per block, from the top down.
        within (Sequence[float]): Probability that an edge stays inside its
            source's block at each level, finest first; they sum to at most 1.
        seed (int, optional): Seed. (default: :obj:`0`)
    """
    num_nodes = as_int(num_nodes, 'num_nodes', minimum=2)
    avg_degree = as_int(avg_degree, 'avg_degree', minimum=1)
    num_parts = as_branching(num_parts, 'num_parts')
    within = [float(w) for w in within]
    if len(within) != len(num_parts) or min(within) < 0 or sum(within) > 1 + 1e-9:
        raise ValueError(f"'within' must hold one probability per level "
                         f"({len(num_parts)}), summing to at most 1, got {within}")
    gen = torch.Generator().manual_seed(seed)
    # nested blocks over slots 0..N-1, top-down: a block of size n starting at
    # a is split at a + ceil(j n / k), j = 0..k
    slot = torch.arange(num_nodes)
    block = torch.zeros(num_nodes, dtype=torch.long)
    start, size = torch.zeros(num_nodes, dtype=torch.long), torch.full((num_nodes, ), num_nodes)
    levels = []
    for k in num_parts:
        sub = torch.div((slot - start) * k, size, rounding_mode='floor')
        low = start + _ceil_div(sub * size, k)
        high = start + _ceil_div((sub + 1) * size, k)
        block, start, size = block * k + sub, low, high - low
        levels.append((block, start, size))
    levels = levels[::-1]                                   # finest first
    num_edges = num_nodes * avg_degree // 2
    source = torch.randint(num_nodes, (num_edges, ), generator=gen)
    level = torch.multinomial(torch.tensor(within + [max(1.0 - sum(within), 0.0)]),
                              num_edges, replacement=True, generator=gen)
    starts = torch.stack([s for _, s, _ in levels] + [torch.zeros(num_nodes, dtype=torch.long)])
    sizes = torch.stack([n for _, _, n in levels] + [torch.full((num_nodes, ), num_nodes)])
    lo, width = starts[level, source], sizes[level, source]
    target = lo + (torch.rand(num_edges, generator=gen) * width).long().clamp(max=width - 1)
    # slots -> nodes: a random order, so node ids say nothing about blocks
    node = torch.randperm(num_nodes, generator=gen)
    edge_index = torch.stack([node[source], node[target]])
    slot_of = torch.empty(num_nodes, dtype=torch.long)
    slot_of[node] = slot
    return edge_index, [b[slot_of] for b, _, _ in levels]


def _ceil_div(a: Tensor, b: int) -> Tensor:
    return torch.div(a + b - 1, b, rounding_mode='floor')
