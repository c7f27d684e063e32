r"""Utilities: graph construction, partitions and subgraphs the HSA models need."""
from hsa_geo.utils.knn import knn_graph
from hsa_geo.utils.partition import metis_levels, plm_levels, symmetric_csr
from hsa_geo.utils.subgraph import hierarchy_subgraph

__all__ = ['knn_graph', 'metis_levels', 'plm_levels', 'symmetric_csr', 'hierarchy_subgraph']
