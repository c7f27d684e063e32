r"""Graph utilities the HSA models need without PyG's compiled extensions."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ['knn_graph']


def _pyg_knn_available() -> bool:
    r"""Whether PyG's own :func:`~torch_geometric.nn.knn_graph` can run (it
    needs ``pyg-lib`` with its ``knn`` operator)."""
    import torch_geometric.typing
    return bool(getattr(torch_geometric.typing, 'WITH_KNN', False))


def knn_graph(pos: Tensor, k: int, batch: Optional[Tensor] = None, loop: bool = False,
              method: str = 'exact', chunk: int = 2048) -> Tensor:
    r"""The :math:`k`-nearest-neighbour graph of the points :obj:`pos` within
    each cloud of :obj:`batch`, as ``[2, N * k]`` edges from each neighbour
    (row 0) to its centre (row 1), PyG's ``source_to_target`` flow, sorted by
    centre.  A cloud with at most :obj:`k` points links every point to all
    the others.

    Does what :func:`torch_geometric.nn.knn_graph` does, which needs
    ``pyg-lib`` (no wheel exists for every torch): when PyG's is usable
    (``torch_geometric.typing.WITH_KNN``), ``method='exact'`` hands off to it;
    otherwise ``method='exact'`` compares every pair of points of a cloud in
    chunks of :obj:`chunk` rows (``O(N^2)`` time per cloud, fine up to about
    :math:`10^5` points); ``method='morton'`` is an approximate graph for
    large clouds: the points are sorted along two Z-order (Morton) curves, one
    shifted by half the grid, and each point picks its :math:`k` nearest among
    the :math:`4k` points on either side of it on each curve (``O(N k)``).

    Args:
        pos (Tensor): Point positions ``[N, dim]``.
        k (int): Neighbours per point.
        batch (LongTensor, optional): Sorted cloud index of every point.
            (default: :obj:`None`, one cloud)
        loop (bool, optional): Count a point as its own neighbour.
            (default: :obj:`False`)
        method (str, optional): ``'exact'`` or ``'morton'``.
            (default: ``'exact'``)
        chunk (int, optional): Rows compared at once. (default: :obj:`2048`)
    """
    if pos.dim() != 2 or pos.size(0) == 0:
        raise ValueError(f"'pos' must have shape [num_points > 0, dim], got "
                         f"{list(pos.shape)}")
    if k < 1:
        raise ValueError(f"'k' must be at least 1, got {k}")
    if method not in ('exact', 'morton'):
        raise ValueError(f"'method' must be 'exact' or 'morton', got {method!r}")
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    if batch.numel() != pos.size(0) or (batch.numel() > 1 and
                                        bool((batch[1:] < batch[:-1]).any())):
        raise ValueError(f"'batch' must be a sorted cloud index of length {pos.size(0)}")
    if method == 'exact' and _pyg_knn_available():
        from torch_geometric.nn import knn_graph as pyg_knn_graph
        edges = pyg_knn_graph(pos, k, batch, loop=loop, flow='source_to_target')
        return edges[:, torch.argsort(edges[1], stable=True)]  # sorted by centre
    counts = torch.bincount(batch).tolist()
    find = _knn_exact if method == 'exact' else _knn_morton
    edges, start = [], 0
    for count in counts:
        if count > 1 or (loop and count == 1):
            points = pos[start:start + count]
            src, dst = find(points, min(k, count - (0 if loop else 1)), loop, chunk)
            edges.append(torch.stack([src, dst]) + start)
        start += count
    if not edges:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    return torch.cat(edges, dim=1)


def _knn_exact(pos: Tensor, k: int, loop: bool, chunk: int):
    neighbours = []
    for i in range(0, pos.size(0), chunk):
        dist = torch.cdist(pos[i:i + chunk], pos)
        if not loop:
            rows = torch.arange(dist.size(0), device=pos.device)
            dist[rows, rows + i] = float('inf')
        neighbours.append(dist.topk(k, dim=1, largest=False).indices)
    src = torch.cat(neighbours).view(-1)
    dst = torch.arange(pos.size(0), device=pos.device).repeat_interleave(k)
    return src, dst


def _morton_order(pos: Tensor, shift: float) -> Tensor:
    low = pos.min(0).values
    extent = (pos.max(0).values - low).max().clamp(min=1e-12)
    bits = 63 // pos.size(1)
    cell = ((pos - low) / extent * ((1 << bits) - 2) + shift * (1 << (bits - 1))).long()
    code = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    for bit in range(bits):                     # interleave the axes' bits
        for axis in range(pos.size(1)):
            code |= ((cell[:, axis] >> bit) & 1) << (bit * pos.size(1) + axis)
    return code.argsort()


def _knn_morton(pos: Tensor, k: int, loop: bool, chunk: int):
    num, window = pos.size(0), 4 * k
    offsets = torch.arange(-window, window + 1, device=pos.device)
    if not loop:
        offsets = offsets[offsets != 0]
    candidates = []
    for shift in (0.0, 1.0):
        order = _morton_order(pos, shift)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(num, device=pos.device)
        slot = (rank.view(-1, 1) + offsets).clamp(0, num - 1)
        candidates.append(order[slot])
    candidates = torch.cat(candidates, dim=1)                       # [N, C]
    neighbours = []
    for i in range(0, num, chunk):
        cand = candidates[i:i + chunk]
        dist = (pos[cand] - pos[i:i + chunk].unsqueeze(1)).pow(2).sum(-1)
        # a candidate may repeat (clamped ends, both curves): keep each once
        cand_sorted, order = cand.sort(dim=1)
        dist = dist.gather(1, order)
        repeat = torch.zeros_like(cand_sorted, dtype=torch.bool)
        repeat[:, 1:] = cand_sorted[:, 1:] == cand_sorted[:, :-1]
        dist = dist.masked_fill(repeat, float('inf'))
        if not loop:
            own = torch.arange(i, i + cand.size(0), device=pos.device).view(-1, 1)
            dist = dist.masked_fill(cand_sorted == own, float('inf'))
        pick = dist.topk(k, dim=1, largest=False).indices
        neighbours.append(cand_sorted.gather(1, pick))
    src = torch.cat(neighbours).view(-1)
    dst = torch.arange(num, device=pos.device).repeat_interleave(k)
    return src, dst
