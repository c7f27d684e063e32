r"""hsa_geo: Hierarchical Self-Attention (Amizadeh et al., NeurIPS 2025) for
PyTorch Geometric."""
from hsa_geo import hierarchy_io  # noqa: F401  (registers how a Hierarchy is saved and exported)
from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.nn import HSAConv

__version__ = '0.1.0'

__all__ = ['Hierarchy', 'hsa', 'HSAConv', '__version__']
