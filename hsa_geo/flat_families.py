r"""Softmax attention within each graph of a PyG batch, as a hierarchy that
the attention call compiles itself."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from hsa_geo import compiled
from hsa_geo.attention_inputs import prepare
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike

__all__ = ['FlatFamilies']


class FlatFamilies(HierarchyLike):
    r"""One flat family per graph of :obj:`batch` (all leaves in one family
    when it is :obj:`None`): the forest of softmax attention within each
    graph, which :func:`~hsa_geo.hsa` builds itself, once per batch tensor,
    so that a layer given only PyG's ``batch`` vector (e.g.
    :class:`~hsa_geo.nn.HSAGPSConv` without a hierarchy) compiles into one
    graph.  Any number of leaves is accepted (:attr:`num_leaves` is
    :obj:`None`).

    Args:
        batch (LongTensor, optional): The graph index of every node, as in
            PyG's ``Batch.batch``.
    """
    __slots__ = ('batch', )
    num_leaves = None

    def __init__(self, batch: Optional[Tensor]):
        self.batch = batch

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, include_self: bool = False,
               causal: bool = False, scale: Optional[float] = None,
               dropout: float = 0.0) -> Tensor:
        r""":func:`~hsa_geo.hsa` within each graph (see there)."""
        call = prepare(q, k, v, pos, bias, include_self, causal, scale, dropout)
        if self.batch is None:  # under torch.compile: no size of the batch in the graph
            return compiled.run(call, call.q.new_empty(0), 'single')
        return compiled.run(call, self.batch, 'batch')

    def pair_hierarchy(self, num_leaves: int, device: torch.device) -> Hierarchy:
        r"""The flat hierarchy of :obj:`num_leaves` leaves the attention runs
        over (built anew on every call)."""
        out = Hierarchy.from_batch(self.batch, num_leaves)
        return out.to(device)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(batch={self.batch is not None})'
