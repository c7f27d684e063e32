r"""How a :class:`~hsa_geo.Hierarchy` leaves its process.

* **Files** (``torch.save`` / ``torch.load``, ``weights_only=True`` included):
  a hierarchy is saved as its parent vector, leaf count, node types and
  distributed share, and loading compiles and checks the vector again, so a
  file cannot hand a malformed forest to the compiled kernels.
* **Other processes of one program** (the pickler of :mod:`multiprocessing`,
  which DataLoader workers use): a hierarchy travels as it is, checked once
  where it was built, not compiled again.
* **Exported programs** (:func:`torch.export.export`): a hierarchy is a
  pytree of three tensors: its :attr:`~hsa_geo.Hierarchy.token`, ``leaf_tree``
  and ``roots``.  One exported program then serves every hierarchy of this
  process (the token names it to the compiled operator at run time); give
  :func:`export_shapes` as the hierarchy's ``dynamic_shapes``.  A token names
  a hierarchy of the running process only, and ONNX export is not supported
  (the operator has no ONNX decomposition).

Importing :mod:`hsa_geo` registers all three.
"""
from __future__ import annotations

import copyreg
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import Dict, List, Optional, Tuple

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from hsa_geo._checks import versions
from hsa_geo.hierarchy import Hierarchy

__all__ = ['export_shapes']


# --------------------------------------------------------------------- files
def _save(h: Hierarchy):
    h.check_intact()
    share = h.__dict__.get('_hsa_share')
    return (_load, (h.parent, h.num_leaves, dict(h.node_slices),
                    None if share is None else tuple(int(x) for x in share)))


def _load(parent: Tensor, num_leaves: int, node_slices: Dict[str, Tuple[int, int]],
          share: Optional[Tuple[int, int, int]] = None) -> Hierarchy:
    r"""A saved hierarchy, compiled and checked again."""
    out = Hierarchy.from_parent(parent, num_leaves)
    if node_slices:
        out = out.with_node_types(node_slices)
    if share is not None:  # recorded by hsa_geo.distributed
        out._hsa_share = tuple(share)
    return out


# ---------------------------------------------------------- other processes
def _send(h: Hierarchy):
    h.check_intact()
    state = dict(h.__dict__)
    state['node_slices'] = dict(h.node_slices)  # a mapping proxy does not pickle
    state.pop('_token', None)  # a serial of this process: a new one on arrival
    return (_receive, (state, ))


def _receive(state: dict) -> Hierarchy:
    out = Hierarchy.__new__(Hierarchy)
    state['node_slices'] = MappingProxyType(state['node_slices'])
    out.__dict__.update(state)
    out._versions = versions(out.parent, out.roots, out.leaf_tree)
    out._register()
    return out


# ------------------------------------------------------- exported programs
_LEAVES = ('token', 'leaf_tree', 'roots')


def _flatten(h: Hierarchy):
    return [h.token, h.leaf_tree, h.roots], None


def _flatten_with_keys(h: Hierarchy):
    return [(pytree.GetAttrKey(k), v) for k, v in zip(_LEAVES, _flatten(h)[0])], None


def _unflatten(children, context) -> Hierarchy:
    r"""The stand-in an exported program traces with: a Hierarchy holding the
    three tensors only (its attention goes to the compiled operator by token;
    pooling by tree reads ``leaf_tree`` and ``roots``)."""
    token, leaf_tree, roots = children
    out = Hierarchy.__new__(Hierarchy)
    fields = dict(_token=token, leaf_tree=leaf_tree, roots=roots, parent=None,
                  num_leaves=None, forest=None, depth=None, max_branching=None,
                  num_roots=None, node_slices=MappingProxyType({}), leaf_types=(),
                  _versions=None, _sibling_index=None)
    for name, value in fields.items():
        object.__setattr__(out, name, value)
    return out


def export_shapes(leaves) -> List[Optional[dict]]:
    r"""The ``dynamic_shapes`` entry of a :class:`~hsa_geo.Hierarchy` input of
    :func:`torch.export.export`: its token (fixed size), ``leaf_tree`` sized by
    :obj:`leaves` (the :class:`torch.export.Dim` of the leaf count, the one
    ``q``'s rows have) and ``roots`` (automatic).  Export with an example
    forest of at least two trees and two leaves: a size seen as 1 is
    specialised by :func:`torch.export.export`.

    Example::

        >>> import torch
        >>> from torch.export import Dim, export
        >>> from hsa_geo import Hierarchy, hsa
        >>> from hsa_geo.hierarchy_io import export_shapes
        >>> class Attend(torch.nn.Module):
        ...     def forward(self, x, hierarchy):
        ...         return hsa(x, x, x, hierarchy)
        >>> h = Hierarchy.from_parent(torch.tensor([5, 5, 6, 6, 6, -1, -1]), 5)
        >>> leaves = Dim('leaves')
        >>> program = export(Attend(), (torch.randn(5, 2, 8), h),
        ...                  dynamic_shapes=({0: leaves}, export_shapes(leaves)))
    """
    return [None, {0: leaves}, {0: torch.export.Dim.AUTO}]


copyreg.pickle(Hierarchy, _save)
ForkingPickler.register(Hierarchy, _send)
if hasattr(torch.serialization, 'add_safe_globals'):
    torch.serialization.add_safe_globals([_load])
pytree.register_pytree_node(Hierarchy, _flatten, _unflatten,
                            serialized_type_name='hsa_geo.Hierarchy',
                            flatten_with_keys_fn=_flatten_with_keys)
