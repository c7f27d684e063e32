r"""Every node's depth in a forest given as a parent vector, by pointer
jumping: :math:`O(N \log \text{depth})` vectorised work and no Python loop
over nodes.  The one implementation the builder, the parent-vector checks and
the attention plots share."""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

__all__ = ['node_depth']


def node_depth(parent: Tensor) -> Tuple[Tensor, Tensor]:
    r"""``(depth, stuck)`` for a CPU parent vector (``-1`` at the roots):
    ``depth[i]`` the number of edges from node ``i`` up to its root, and
    ``stuck[i]`` :obj:`True` where node ``i`` never reaches a root (it lies on
    or below a cycle; its depth is then meaningless)."""
    num_nodes = parent.numel()
    sentinel = num_nodes  # an extra node that is its own parent
    jump = torch.cat([torch.where(parent < 0, sentinel, parent),
                      torch.tensor([sentinel])])
    dist = torch.cat([(parent >= 0).long(), torch.zeros(1, dtype=torch.long)])
    for _ in range(max(1, math.ceil(math.log2(num_nodes + 1))) + 1):
        dist = dist + dist[jump]
        jump = jump[jump]
    return dist[:num_nodes], jump[:num_nodes] != sentinel
