r"""What :func:`hsa_geo.hsa`, the layers and the pooling functions ask of a
hierarchy: the protocol every hierarchy-like structure implements.

Four structures implement it: :class:`~hsa_geo.Hierarchy` (a compiled
forest), :class:`~hsa_geo.functional.LoneLeaves` (its leaves with attention
switched off), :class:`~hsa_geo.functional.FlatFamilies` (one flat family per
graph of PyG's ``batch`` vector, compiled by the call itself) and
:class:`~hsa_geo.distributed.ShardedHierarchy` (one rank's share of a tree
spread over processes).  Functional code and layers call these methods and
never ask which of them they were given, so a new kind of hierarchy is a new
subclass, not a new branch in every caller.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch
from torch import Tensor

__all__ = ['HierarchyLike']


class HierarchyLike(ABC):
    r"""A structure HSA attends over.

    Attributes a subclass provides:

    * ``num_leaves`` (int or :obj:`None`): the rows of ``q``, ``k``, ``v``
      (and of a layer's leaf inputs); :obj:`None` when any number is accepted
      (:class:`~hsa_geo.functional.FlatFamilies`), and then no layer compares
      sizes with it.
    * ``has_attention`` (bool): whether a leaf can attend to anything but
      itself; :obj:`False` for :class:`~hsa_geo.functional.LoneLeaves`, whose
      layers need no positions.
    """
    __slots__ = ()

    num_leaves: Optional[int]
    has_attention: bool = True

    @abstractmethod
    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, include_self: bool = False,
               causal: bool = False, scale: Optional[float] = None,
               dropout: float = 0.0) -> Tensor:
        r""":func:`hsa_geo.hsa` over this structure: the arguments of
        :func:`~hsa_geo.hsa`, checked here (every implementation raises a
        :class:`TypeError` or :class:`ValueError` naming the argument)."""

    @abstractmethod
    def pair_hierarchy(self, num_leaves: int, device: torch.device):
        r"""The compiled :class:`~hsa_geo.Hierarchy` whose sibling pairs the
        attention runs over, for :obj:`num_leaves` leaves on :obj:`device` (for
        attention weights and explanations).  Raises :class:`ValueError`
        naming the reason when this process holds no such hierarchy."""

    def sibling_pairs(self, num_leaves: int, device: torch.device) -> Tensor:
        r"""``[2, num_pairs]`` the ordered sibling pairs an explainer of the
        attention sees; empty where :meth:`pair_hierarchy` has none to give."""
        return self.pair_hierarchy(num_leaves, device).sibling_index

    def refuse_pooling(self, nodes: Optional[Tensor] = None) -> None:
        r"""Raises :class:`TypeError` when pooling the leaves below
        :obj:`nodes` (:obj:`None`: below every root, i.e. whole trees) would
        not be exact on this structure; nothing otherwise."""
        return None
