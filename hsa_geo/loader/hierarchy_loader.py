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
from torch_geometric.data import Dataset, HeteroData
from torch_geometric.data.data import BaseData
from torch_geometric.loader.dataloader import Collater

from hsa_geo._checks import as_bool, as_int
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
        follow_batch = _as_names(follow_batch, 'follow_batch')
        exclude_keys = _as_names(exclude_keys, 'exclude_keys')
        self.collate = Collater(dataset, follow_batch, exclude_keys)
        self.relation = relation
        self.root_leaves = as_bool(root_leaves, 'root_leaves')

    def __call__(self, samples: List[Any]):
        _check_samples(samples)
        batch = self.collate(samples)
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
        if not (isinstance(dataset, torch.utils.data.IterableDataset) or
                (hasattr(dataset, '__getitem__') and hasattr(dataset, '__len__'))):
            raise TypeError(f"'dataset' must be a Dataset or a sequence of HeteroData "
                            f"hierarchies, got {type(dataset).__name__}")
        batch_size = as_int(batch_size, 'batch_size', minimum=1)
        shuffle = as_bool(shuffle, 'shuffle')
        self.follow_batch, self.exclude_keys = follow_batch, exclude_keys
        super().__init__(dataset, batch_size, shuffle,
                         collate_fn=HierarchyCollater(dataset, follow_batch, exclude_keys,
                                                      relation, root_leaves),
                         **kwargs)


def _as_names(names, name: str) -> Optional[List[str]]:
    r"""An attribute-name list as PyG's ``DataLoader`` takes it (a single
    string would be read character by character)."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"'{name}' must be a list of attribute names (strings) or None, "
                        f"got {names!r}")
    return list(names)


def _check_samples(samples: Sequence[Any]) -> None:
    r"""Every sample a HeteroData hierarchy with the first one's node and
    edge types, which PyG's collater needs to batch them into one forest
    (checked before collating: a mismatch fails there with an error about
    tensor sizes, or not at all)."""
    for i, sample in enumerate(samples):
        if not isinstance(sample, HeteroData):
            raise TypeError(f"HierarchyLoader batches hierarchies stored as HeteroData "
                            f"(the output of a builder in hsa_geo.transforms, e.g. "
                            f"GraphHierarchy() as the dataset's transform); sample {i} of "
                            f"the batch is a {type(sample).__name__}")
    if not samples:
        return
    first = samples[0]
    node_types, edge_types = set(first.node_types), set(first.edge_types)
    for i, sample in enumerate(samples[1:], start=1):
        for kind, expected, found in (('node', node_types, set(sample.node_types)),
                                      ('edge', edge_types, set(sample.edge_types))):
            if found != expected:
                raise ValueError(
                    f"the samples of a batch differ in their {kind} types: sample {i} of "
                    f"the batch has {sorted(found)}, sample 0 has {sorted(expected)} "
                    f"(missing: {sorted(expected - found)}, extra: "
                    f"{sorted(found - expected)}); build every sample with the same "
                    f"hierarchy builder so that they batch into one forest")
