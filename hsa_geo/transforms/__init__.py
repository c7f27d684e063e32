r"""Hierarchy builders as PyG transforms."""
from hsa_geo.transforms.molecule import MoleculeHierarchy, molecule_clusters
from hsa_geo.transforms.sequence import SequenceHierarchy, grid_positions, window_parent

__all__ = [
    'SequenceHierarchy',
    'MoleculeHierarchy',
    'window_parent',
    'grid_positions',
    'molecule_clusters',
]
