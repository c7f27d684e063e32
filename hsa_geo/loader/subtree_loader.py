r"""Mini-batches of subtrees of one large hierarchy, for node-level tasks on
graphs too large for full-batch training: Cluster-GCN's idea (Chiang et al.,
KDD 2019), with the clusters taken along the hierarchy, so that every batch is
a valid hierarchy holding the graph's edges inside it.  Needs neither pyg-lib
nor torch-sparse."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.utils.data
from torch import Tensor
from torch_geometric.data import HeteroData

from hsa_geo._checks import as_bool, as_int
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.utils.subgraph import hierarchy_subgraph

__all__ = ['SubtreeLoader', 'top_subtrees']


def _compile(data, relation) -> Hierarchy:
    r"""The whole hierarchy of :obj:`data` compiled (leaves without a parent
    edge are trees of their own), every malformed input refused with an
    error that names :obj:`data` or :obj:`relation`."""
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a hierarchy HeteroData (e.g. the output of "
                        f"GraphHierarchy), got {type(data).__name__}")
    if not isinstance(relation, str):
        raise TypeError(f"'relation' must be a str (the relation of the child-to-parent "
                        f"edges), got {relation!r} of type {type(relation).__name__}")
    if not any(key[1] == relation for key in data.edge_types):
        raise ValueError(f"'relation' is {relation!r}, but 'data' has no edge type (child, "
                         f"{relation!r}, parent); its edge types are {data.edge_types}")
    try:
        return Hierarchy.from_hetero(data, relation=relation, root_leaves=True)
    except (TypeError, ValueError) as error:
        raise type(error)(f"'data' is not a valid hierarchy (the edges of relation "
                          f"{relation!r} go from the child, row 0 of edge_index, to its "
                          f"parent, row 1): {error}") from error


def _top_level(hierarchy: Hierarchy):
    r"""For every node of :obj:`hierarchy` the index of the top-level subtree
    (a child of a root) that holds it, ``-1`` for the roots; the subtrees are
    numbered in the node order of their top-level nodes.  Also returns their
    number."""
    parent = hierarchy.parent.cpu()
    is_root = parent < 0
    is_top = ~is_root & is_root[parent.clamp(min=0)]
    jump = torch.where(is_root | is_top, torch.arange(parent.numel()), parent)
    while True:                    # pointer jumping up to the top-level node
        up = jump[jump]
        if torch.equal(up, jump):
            break
        jump = up
    number = torch.cumsum(is_top.long(), 0) - 1
    return torch.where(is_root, -1, number[jump]), int(is_top.sum())


def top_subtrees(data: HeteroData, relation: str = 'in') -> Dict[str, Tensor]:
    r"""For every node of a hierarchy, the index of the top-level subtree (a
    child of a root) that holds it; ``-1`` for the roots.  The roots are found
    node by node (a root may share its node type with clusters below it), and
    the subtrees are numbered in the order of their top-level nodes in
    :meth:`Hierarchy.from_hetero`'s numbering (leaf types first, then cluster
    types, each in :obj:`data.node_types` order)."""
    whole = _compile(data, relation)
    top, _ = _top_level(whole)
    return {t: top[start:end] for t, (start, end) in whole.node_slices.items()}


class SubtreeLoader(torch.utils.data.DataLoader):
    r"""Yields sub-hierarchies of one large hierarchy: :obj:`batch_size`
    top-level subtrees (children of the root, e.g. the coarsest communities of
    :class:`~hsa_geo.transforms.GraphHierarchy`) with all their leaves, pruned
    to a valid hierarchy under the root by
    :func:`~hsa_geo.utils.hierarchy_subgraph` (node and edge attributes sliced,
    ``n_id`` / ``e_id``
    giving the original indices, the graph's edges inside the batch kept), with
    the compiled forest as ``batch.hierarchy``, like
    :class:`~hsa_geo.loader.HierarchyLoader`'s batches.

    Attention in a batch is HSA over its leaves, exactly as on the full
    hierarchy restricted to them; leaves of other subtrees are not attended.

    Example::

        >>> data = GraphHierarchy(method='metis', num_parts=(64, 16))(graph)
        >>> loader = SubtreeLoader(data, batch_size=8, shuffle=True)
        >>> for batch in loader:
        ...     out = model(batch['node'].x, batch.hierarchy)
        ...     loss = F.cross_entropy(out[batch['node'].train_mask], ...)

    Args:
        data (HeteroData): The hierarchy (one tree; several roots work too, all
            their children are subtrees).
        batch_size (int, optional): Top-level subtrees per batch.
            (default: :obj:`1`)
        shuffle (bool, optional): Draw the subtrees of each batch at random
            every epoch. (default: :obj:`False`)
        relation (str, optional): The relation of child-to-parent edges.
            (default: :obj:`'in'`)
        **kwargs (optional): Arguments of :class:`torch.utils.data.DataLoader`
            (``num_workers``, ``drop_last``, ...).
    """
    def __init__(self, data: HeteroData, batch_size: int = 1, shuffle: bool = False,
                 relation: str = 'in', **kwargs):
        if not isinstance(data, HeteroData):
            raise TypeError(f"'data' must be a hierarchy HeteroData (e.g. the output of "
                            f"GraphHierarchy), got {type(data).__name__}")
        if 'collate_fn' in kwargs:
            raise TypeError("SubtreeLoader takes no 'collate_fn': its batches are the "
                            "sub-hierarchies of the drawn subtrees")
        batch_size = as_int(batch_size, 'batch_size', minimum=1)
        shuffle = as_bool(shuffle, 'shuffle')
        self.data, self.relation = data, relation
        whole = _compile(data, relation)
        self.leaf_types = list(whole.leaf_types)
        top, self.num_subtrees = _top_level(whole)
        self.top = {t: top[start:end] for t, (start, end) in whole.node_slices.items()}
        if self.num_subtrees == 0:
            raise ValueError("'data' has no subtrees below its roots")
        super().__init__(range(self.num_subtrees), batch_size, shuffle,
                         collate_fn=self._collate, **kwargs)

    def _collate(self, subtrees: List[int]) -> HeteroData:
        chosen = torch.zeros(self.num_subtrees, dtype=torch.bool)
        chosen[torch.as_tensor(subtrees, dtype=torch.long)] = True
        leaves = {t: chosen[self.top[t].clamp(min=0)] & (self.top[t] >= 0)
                  for t in self.leaf_types}
        batch = hierarchy_subgraph(self.data, leaves, self.relation)
        batch.hierarchy = Hierarchy.from_hetero(batch, relation=self.relation)
        return batch

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_subtrees={self.num_subtrees}, '
                f'batch_size={self.batch_size})')
