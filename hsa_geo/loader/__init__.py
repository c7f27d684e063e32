r"""Loaders whose batches carry their compiled :class:`~hsa_geo.Hierarchy`:
:class:`HierarchyLoader` batches whole samples (one tree each),
:class:`SubtreeLoader` cuts one large hierarchy into batches of subtrees."""
from hsa_geo.loader.hierarchy_loader import HierarchyCollater, HierarchyLoader
from hsa_geo.loader.subtree_loader import SubtreeLoader, top_subtrees

__all__ = ['HierarchyCollater', 'HierarchyLoader', 'SubtreeLoader', 'top_subtrees']
