r"""The leaves of a hierarchy with attention switched off: the DeepSet
baseline of a hierarchical model."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from hsa_geo.attention_inputs import check_sizes, prepare
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike

__all__ = ['LoneLeaves']


class LoneLeaves(HierarchyLike):
    r"""The leaves of :obj:`hierarchy`, each a tree of its own: no leaf has
    a sibling, so :func:`~hsa_geo.hsa` returns zeros (each leaf's own value
    with ``include_self``).  Attention switched off with every size and leaf
    type of the hierarchy kept, and nothing compiled: the DeepSet baseline of
    a hierarchical model (e.g. ``HTEPredictor(attention=False)``).

    Args:
        hierarchy (Hierarchy): The hierarchy whose sizes, leaf types and
            device the layers see.
    """
    __slots__ = ('hierarchy', )
    has_attention = False

    def __init__(self, hierarchy: Hierarchy):
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"'hierarchy' must be a compiled Hierarchy, got "
                            f"{type(hierarchy).__name__}")
        self.hierarchy = hierarchy

    def __getattr__(self, name):  # sizes, leaf types, device: the hierarchy's
        if name == 'hierarchy' or name.startswith('__'):  # copy / pickle probes
            raise AttributeError(name)
        return getattr(self.hierarchy, name)

    @property
    def num_leaves(self) -> int:
        return self.hierarchy.num_leaves

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, include_self: bool = False,
               causal: bool = False, scale: Optional[float] = None,
               dropout: float = 0.0) -> Tensor:
        r"""Zeros, or :obj:`v` with :obj:`include_self` (no leaf has a
        sibling); the arguments are checked as :func:`~hsa_geo.hsa` checks
        them."""
        call = prepare(q, k, v, pos, bias, include_self, causal, scale, dropout)
        if not torch.compiler.is_compiling():
            check_sizes(call.q, None, None, self.hierarchy)
        if pos is not None or bias is not None:
            raise ValueError("'pos' and 'bias' belong to sibling pairs, and LoneLeaves "
                             "has none: pass neither")
        return (call.v if call.include_self else torch.zeros_like(call.v)).to(call.out_dtype)

    def pair_hierarchy(self, num_leaves: int, device: torch.device):
        raise ValueError("LoneLeaves has no sibling pairs: there are no attention weights "
                         "to return")

    def sibling_pairs(self, num_leaves: int, device: torch.device) -> Tensor:
        return torch.empty(2, 0, dtype=torch.long, device=device)  # no pairs to explain

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.hierarchy!r})'
