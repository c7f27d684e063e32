r"""Utilities: graph construction the HSA models need."""
from hsa_geo.utils.knn import knn_graph
from hsa_geo.utils.partition import metis_levels, symmetric_csr

__all__ = ['knn_graph', 'metis_levels', 'symmetric_csr']
