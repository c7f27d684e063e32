r"""SYNTHETIC graphs with a planted hierarchy of communities, for measuring
how well a hierarchy builder recovers communities it was not told about, and
for node classification without a download."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import as_branching, as_finite_float, as_int

__all__ = ['planted_hierarchy_graph', 'planted_node_dataset']


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
    within = _as_floats(within, 'within')
    seed = as_int(seed, 'seed', minimum=0)
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


def _as_floats(values, name: str) -> List[float]:
    r"""A sequence of finite floats, each named in its error."""
    if isinstance(values, (str, bytes)) or not hasattr(values, '__len__'):
        raise TypeError(f"'{name}' must be a sequence of numbers, got {values!r}")
    return [as_finite_float(v, f'{name}[{i}]') for i, v in enumerate(values)]


def _ceil_div(a: Tensor, b: int) -> Tensor:
    return torch.div(a + b - 1, b, rounding_mode='floor')


def planted_node_dataset(num_nodes: int = 100_000, avg_degree: int = 20,
                         num_parts: Sequence[int] = (16, 16, 16),
                         within: Sequence[float] = (0.5, 0.2, 0.1), label_level: int = 1,
                         num_classes: int = 8, num_features: int = 32, signal: float = 0.6,
                         split: Sequence[float] = (0.1, 0.1), seed: int = 0,
                         community_labels: bool = True):
    r"""A **SYNTHETIC** node-classification graph with planted nested
    communities (:func:`planted_hierarchy_graph`), for node-level tasks that
    need no download.

    Every block at level :obj:`label_level` (0: the finest) draws a class
    uniformly at random; its nodes carry that class (with
    :obj:`community_labels=False` every node draws its own class instead: a
    control whose labels do not follow the communities, so a model's prior
    of the communities no longer helps).  A node's features are
    its class's prototype (a random unit vector) times :obj:`signal` plus
    standard Gaussian noise in :obj:`num_features` dimensions, so one node
    alone is a weak witness of its class and the community around it is a
    strong one.  The edges are made undirected (both directions, no repeats,
    no self-loops).  Random train / validation masks of the shares in
    :obj:`split`, the rest test.

    Returns a :class:`~torch_geometric.data.Data` with ``x``, ``y``,
    ``edge_index``, ``train_mask``, ``val_mask``, ``test_mask`` and
    ``planted`` (the planted block of every node at each level, finest
    first, ``[num_nodes, num_levels]``).

    Args:
        num_nodes (int, optional): Number of nodes. (default: :obj:`100000`)
        avg_degree (int, optional): Mean degree of the drawn edges.
            (default: :obj:`20`)
        num_parts (Sequence[int], optional): Blocks per block, top-down.
            (default: :obj:`(16, 16, 16)`)
        within (Sequence[float], optional): Share of edges inside the source's
            block at each level, finest first. (default: :obj:`(0.5, 0.2, 0.1)`)
        label_level (int, optional): The level whose blocks carry the classes.
            (default: :obj:`1`)
        num_classes (int, optional): Number of classes. (default: :obj:`8`)
        num_features (int, optional): Feature dimensions. (default: :obj:`32`)
        signal (float, optional): Length of the class prototype in the
            features. (default: :obj:`0.6`)
        split (Sequence[float], optional): Train and validation shares.
            (default: :obj:`(0.1, 0.1)`)
        seed (int, optional): Seed of the graph, classes, features and split.
            (default: :obj:`0`)
        community_labels (bool, optional): If :obj:`False`, classes are
            drawn per node, not per block of :obj:`label_level`.
            (default: :obj:`True`)
    """
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected
    num_parts = as_branching(num_parts, 'num_parts')
    label_level = as_int(label_level, 'label_level', minimum=0, maximum=len(num_parts) - 1)
    num_classes = as_int(num_classes, 'num_classes', minimum=2)
    num_features = as_int(num_features, 'num_features', minimum=1)
    signal = as_finite_float(signal, 'signal')
    split = _as_floats(split, 'split')
    if len(split) != 2 or min(split) <= 0 or sum(split) >= 1:
        raise ValueError(f"'split' must be (train share, validation share), both positive "
                         f"and summing to less than 1, got {split}")
    edge_index, planted = planted_hierarchy_graph(num_nodes, avg_degree, num_parts, within,
                                                  seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    blocks = planted[label_level]
    if not isinstance(community_labels, bool):
        raise TypeError(f"'community_labels' must be a bool, got "
                        f"{type(community_labels).__name__}")
    if community_labels:
        y = torch.randint(num_classes, (int(blocks.max()) + 1, ), generator=gen)[blocks]
    else:
        y = torch.randint(num_classes, (num_nodes, ), generator=gen)
    prototypes = torch.nn.functional.normalize(
        torch.randn(num_classes, num_features, generator=gen), dim=1)
    x = signal * prototypes[y] + torch.randn(num_nodes, num_features, generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    order = torch.randperm(num_nodes, generator=gen)
    train_end = int(split[0] * num_nodes)
    val_end = train_end + int(split[1] * num_nodes)
    masks = []
    for lo, hi in ((0, train_end), (train_end, val_end), (val_end, num_nodes)):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[order[lo:hi]] = True
        masks.append(mask)
    return Data(x=x, y=y, edge_index=edge_index, train_mask=masks[0], val_mask=masks[1],
                test_mask=masks[2], planted=torch.stack(planted, 1))
