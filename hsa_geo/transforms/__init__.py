r"""Hierarchy builders as PyG transforms."""
from hsa_geo.transforms.sequence import SequenceHierarchy, grid_positions, window_parent

__all__ = ['SequenceHierarchy', 'window_parent', 'grid_positions']
