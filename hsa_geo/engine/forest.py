r"""What the engine is handed for a forest: a validated parent vector with
its two compiled forms, each built on first use.

* :attr:`Forest.families` (:mod:`hsa_geo.engine.families`): the families in
  CSR form the fused CPU kernels run on, compiled straight from the parent
  vector in one pass when numba is installed;
* :attr:`Forest.layout` (:mod:`hsa_geo.engine.layout`): the padded size
  classes of the PyTorch and Triton paths.

A batch that runs on the fused kernels never builds the padded layout, so
compiling it (what :class:`~hsa_geo.loader.HierarchyLoader` does per batch)
costs one pass over its nodes.  Both forms number the sibling pairs the same
way, so :meth:`Forest.sibling_index` (a ``bias``'s order) does not depend on
which is built.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from hsa_geo.engine import numba_kernels
from hsa_geo.engine.builder import build_layout
from hsa_geo.engine.families import Families, families_from_parent, families_of, from_arrays
from hsa_geo.engine.layout import Layout

__all__ = ['Forest', 'Compiled', 'compile_parent']


class Forest:
    r"""A validated forest for the engine (see the module docstring).

    Args:
        parent (LongTensor): The validated parent vector, on the CPU.
        num_leaves (int): The leaves, nodes ``0 .. num_leaves - 1``.
        device (torch.device): Where the compiled forms live.
    """
    __slots__ = ('parent', 'num_leaves', 'device', '_layout', '_families')

    def __init__(self, parent: Tensor, num_leaves: int, device=None,
                 layout: Optional[Layout] = None, families: Optional[Families] = None):
        self.parent = parent
        self.num_leaves = num_leaves
        self.device = torch.device('cpu') if device is None else torch.device(device)
        self._layout = layout
        self._families = families

    @property
    def layout(self) -> Layout:
        r"""The padded layout (built on first use)."""
        if self._layout is None:
            layout = build_layout(self.parent, self.num_leaves)
            self._layout = layout if self.device.type == 'cpu' else layout.to(self.device)
        return self._layout

    @property
    def families(self) -> Families:
        r"""The families (built on first use: in one compiled pass over the
        parent vector on the CPU with numba, else from the layout)."""
        if self._families is None:
            if self._layout is None and self.device.type == 'cpu' and \
                    numba_kernels.available():
                self._families = families_from_parent(self.parent, self.num_leaves)
            else:
                self._families = families_of(self.layout)
        return self._families

    @property
    def num_nodes(self) -> int:
        return self.parent.numel()

    @property
    def num_pairs(self) -> int:
        return self.families.num_pairs

    @property
    def num_levels(self) -> int:
        return self.families.num_levels

    def sibling_index(self) -> Tensor:
        r"""``[2, num_pairs]`` the ordered sibling pairs as user node ids, in
        the engine's pair order (level, family, row-major)."""
        if self._layout is not None:
            return self._layout.sibling_index()
        fam = self.families
        sizes = fam.child_ptr.diff()
        per_family = sizes * (sizes - 1)
        family = torch.repeat_interleave(torch.arange(sizes.numel()), per_family)
        k = torch.arange(int(per_family.sum())) - (fam.pair_ptr[family] if family.numel()
                                                  else family)
        b = sizes[family]
        row = torch.div(k, (b - 1).clamp(min=1), rounding_mode='floor')
        col = k - row * (b - 1)
        col = col + (col >= row).long()
        first = fam.child_ptr[:-1][family]
        out = torch.stack([fam.node[first + row], fam.node[first + col]])
        return out.to(self.device)

    def to(self, device) -> 'Forest':
        r"""The forest with its built forms on :obj:`device`."""
        device = torch.device(device)
        layout = None if self._layout is None else self._layout.to(device)
        return Forest(self.parent, self.num_leaves, device, layout, None)

    def __getstate__(self):
        # the compiled forms are rebuilt on first use after loading
        return (self.parent, self.num_leaves, str(self.device))

    def __setstate__(self, state):
        parent, num_leaves, device = state
        self.__init__(parent, num_leaves, device)


class Compiled(NamedTuple):
    r"""A checked parent vector's summary and its :class:`Forest`."""
    depth: int
    max_branching: int
    roots: Tensor
    leaf_tree: Tensor
    forest: Forest


def compile_parent(parent: Tensor, num_leaves: int) -> Optional[Compiled]:
    r"""Checks a parent vector (CPU, int64) and compiles it in two passes of
    numba code over its nodes: the checks of :meth:`hsa_geo.Hierarchy.from_parent`
    (indices in range, no leaf with children, no childless internal node, no
    cycle), the depth, the widest family, the roots in node order, the tree
    of every leaf among them, and the families of the fused kernels.

    Returns :obj:`None` when numba is not installed or the parent vector is
    not a forest: the caller's PyTorch checks then name the fault."""
    if not numba_kernels.available():
        return None
    from hsa_geo.engine import _numba_builder as built
    array = parent.numpy()
    ok, children, order = built.check_parent(array, int(num_leaves))
    if not ok:
        return None
    depth, widest, roots, leaf_tree, families = built.summarize(array, int(num_leaves),
                                                                children, order)
    forest = Forest(parent, num_leaves, families=from_arrays(families, num_leaves))
    return Compiled(int(depth), int(widest), torch.from_numpy(roots),
                    torch.from_numpy(leaf_tree), forest)
