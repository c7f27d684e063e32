r"""Utilities: graph construction the HSA models need."""
from hsa_geo.utils.knn import knn_graph

__all__ = ['knn_graph']
