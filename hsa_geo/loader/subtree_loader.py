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

from hsa_geo._checks import as_int
from hsa_geo.hierarchy import Hierarchy, hierarchy_node_types
from hsa_geo.utils.subgraph import hierarchy_subgraph

__all__ = ['SubtreeLoader', 'top_subtrees']


def top_subtrees(data: HeteroData, relation: str = 'in') -> Dict[str, Tensor]:
    r"""For every node below the roots of a hierarchy, the index of the
    top-level subtree (a child of a root) that holds it, numbered across node
    types in :obj:`data.node_types` order; ``-1`` for the roots."""
    leaf_types, cluster_types = hierarchy_node_types(data.edge_types, data.node_types,
                                                     relation)
    links = [key for key in data.edge_types if key[1] == relation]
    has_parent = {child for child, _, _ in links}
    roots = [t for t in cluster_types if t not in has_parent]
    top = {t: torch.full((int(data[t].num_nodes), ), -1, dtype=torch.long)
           for t in leaf_types + cluster_types}
    count = 0
    for child, _, parent in links:  # the roots' children start the subtrees
        if parent in roots:
            child_index = data[child, relation, parent].edge_index[0]
            top[child][child_index] = torch.arange(count, count + child_index.numel())
            count += child_index.numel()
    for _ in range(len(top)):      # down the tree: a child joins its parent's subtree
        for child, _, parent in links:
            if parent in roots:
                continue
            child_index, parent_index = data[child, relation, parent].edge_index
            top[child][child_index] = top[parent][parent_index]
    return top


class SubtreeLoader(torch.utils.data.DataLoader):
    r"""Yields sub-hierarchies of one large hierarchy: :obj:`batch_size`
    top-level subtrees (children of the root, e.g. the coarsest communities of
    :class:`~hsa_geo.transforms.GraphHierarchy`) with all their leaves, pruned
    to a valid hierarchy under the root by :func:`~hsa_geo.utils.
    hierarchy_subgraph` (node and edge attributes sliced, ``n_id`` / ``e_id``
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
        self.data, self.relation = data, relation
        self.leaf_types, _ = hierarchy_node_types(data.edge_types, data.node_types, relation)
        self.top = top_subtrees(data, relation)
        self.num_subtrees = int(max(int(v.max()) for v in self.top.values())) + 1 \
            if any(v.numel() for v in self.top.values()) else 0
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
