r"""Hierarchy builders as PyG transforms."""
from hsa_geo.transforms.flat import FlatHierarchy
from hsa_geo.transforms.graph import GraphHierarchy, family_laplacian_pe
from hsa_geo.transforms.mesh import MeshHierarchy, face_features
from hsa_geo.transforms.molecule import MoleculeHierarchy, molecule_clusters
from hsa_geo.transforms.multimodal import MultiModalHierarchy, nest
from hsa_geo.transforms.point_cloud import (
                                            FPSHierarchy,
                                            VoxelHierarchy,
                                            auto_depth,
                                            farthest_point_sampling,
)
from hsa_geo.transforms.sequence import SequenceHierarchy, grid_positions, window_parent
from hsa_geo.transforms.text import TextHierarchy, regex_tokenize

__all__ = [
    'SequenceHierarchy',
    'FlatHierarchy',
    'MeshHierarchy',
    'face_features',
    'MultiModalHierarchy',
    'nest',
    'VoxelHierarchy',
    'FPSHierarchy',
    'farthest_point_sampling',
    'auto_depth',
    'GraphHierarchy',
    'family_laplacian_pe',
    'MoleculeHierarchy',
    'TextHierarchy',
    'regex_tokenize',
    'window_parent',
    'grid_positions',
    'molecule_clusters',
]
