r"""Mini-batches of whole samples that carry their compiled
:class:`~hsa_geo.Hierarchy`.

PyG layers take an ``edge_index``; they never build one.  HSA layers take a
:class:`~hsa_geo.Hierarchy`, and :class:`HierarchyLoader` is the one place
that builds it: it collates hierarchies stored as ``HeteroData`` (what every
builder in :mod:`hsa_geo.transforms` returns) with PyG's own collater and
compiles the batch's forest once, with :meth:`Hierarchy.from_hetero`, in the
loader's worker processes when ``num_workers > 0``.  The result is
``batch.hierarchy``; ``batch.to(device)`` moves it with the batch's tensors,
so every layer of a model reuses the same compiled forest on the batch's
device.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import torch.utils.data
from torch_geometric.data import Dataset
from torch_geometric.data.data import BaseData
from torch_geometric.loader.dataloader import Collater

from hsa_geo._checks import as_bool
from hsa_geo.hierarchy import Hierarchy

__all__ = ['HierarchyCollater', 'HierarchyLoader']


class HierarchyCollater:
    r"""Collates hierarchies with PyG's :class:`Collater` and attaches the
    compiled forest of the batch as ``batch.hierarchy``.

    Args:
        dataset (Dataset or Sequence[HeteroData]): The samples (PyG's
            collater looks at its type).
        follow_batch (List[str], optional): As in PyG's ``DataLoader``.
        exclude_keys (List[str], optional): As in PyG's ``DataLoader``.
        relation (str, optional): The relation name of the child-to-parent
            edges. (default: :obj:`'in'`)
        root_leaves (bool, optional): Accept leaves without a parent edge as
            trees of their own (see :meth:`Hierarchy.from_hetero`).
            (default: :obj:`False`)
    """
    def __init__(self, dataset: Union[Dataset, Sequence[BaseData]],
                 follow_batch: Optional[List[str]] = None,
                 exclude_keys: Optional[List[str]] = None,
                 relation: str = 'in', root_leaves: bool = False):
        if not isinstance(relation, str) or not relation:
            raise TypeError(f"'relation' must be a non-empty string (the relation "
                            f"name of the child-to-parent edges), got {relation!r}")
        self.collate = Collater(dataset, follow_batch, exclude_keys)
        self.relation = relation
        self.root_leaves = as_bool(root_leaves, 'root_leaves')

    def __call__(self, samples: List[Any]):
        batch = self.collate(samples)
        if not (hasattr(batch, 'edge_types') and hasattr(batch, 'node_types')):
            raise TypeError(f"HierarchyLoader batches hierarchies stored as HeteroData "
                            f"(the output of a builder in hsa_geo.transforms, e.g. "
                            f"GraphHierarchy() as the dataset's transform); got samples "
                            f"of type {type(samples[0]).__name__}")
        batch.hierarchy = Hierarchy.from_hetero(batch, relation=self.relation,
                                                root_leaves=self.root_leaves)
        return batch


class HierarchyLoader(torch.utils.data.DataLoader):
    r"""A PyG :class:`~torch_geometric.loader.DataLoader` whose batches carry
    their compiled hierarchy as ``batch.hierarchy``: the forest of the whole
    mini-batch (one tree per sample, PyG having offset the edge indices)
    compiled once per batch, so that layers never compile.

    Example::

        >>> loader = HierarchyLoader(dataset, batch_size=32, shuffle=True)
        >>> for batch in loader:
        ...     batch = batch.to(device)          # moves batch.hierarchy too
        ...     out = conv(batch['atom'].x, batch.hierarchy)

    Args:
        dataset (Dataset or Sequence[HeteroData]): Hierarchies as built by
            :mod:`hsa_geo.transforms` (e.g. applied as the dataset's
            ``transform`` or ``pre_transform``).
        batch_size (int, optional): Samples per batch. (default: :obj:`1`)
        shuffle (bool, optional): Reshuffle every epoch. (default: :obj:`False`)
        follow_batch (List[str], optional): Attributes to create assignment
            vectors for, as in PyG's ``DataLoader``.
        exclude_keys (List[str], optional): Attributes to leave out.
        relation (str, optional): The relation name of the child-to-parent
            edges. (default: :obj:`'in'`)
        root_leaves (bool, optional): Accept leaves without a parent edge as
            trees of their own. (default: :obj:`False`)
        **kwargs (optional): Arguments of :class:`torch.utils.data.DataLoader`
            (``num_workers``, ``drop_last``, ...).
    """
    def __init__(self, dataset: Union[Dataset, Sequence[BaseData]], batch_size: int = 1,
                 shuffle: bool = False, follow_batch: Optional[List[str]] = None,
                 exclude_keys: Optional[List[str]] = None, relation: str = 'in',
                 root_leaves: bool = False, **kwargs):
        if 'collate_fn' in kwargs:  # the collater is this loader's point
            raise TypeError("HierarchyLoader takes no 'collate_fn': it collates with "
                            "HierarchyCollater (PyG's collater plus the compiled "
                            "hierarchy); use torch's DataLoader with "
                            "collate_fn=HierarchyCollater(dataset) to wrap your own")
        self.follow_batch, self.exclude_keys = follow_batch, exclude_keys
        super().__init__(dataset, batch_size, shuffle,
                         collate_fn=HierarchyCollater(dataset, follow_batch, exclude_keys,
                                                      relation, root_leaves),
                         **kwargs)
