r"""Ready-made models built on Hierarchical Self-Attention: sample-level
prediction with the paper's hierarchical transformer encoder
(:class:`HTEPredictor`), node-level prediction with HSA as a graph
transformer's global attention (:class:`HSAGraphTransformer`), point-cloud and
mesh transformers (:class:`HSAPointTransformer`, :class:`HSAMeshTransformer`)."""
from hsa_geo.nn.models.default import DEFAULT
from hsa_geo.nn.models.graph_transformer import HSAGraphTransformer
from hsa_geo.nn.models.hte import HTEPredictor
from hsa_geo.nn.models.point_transformer import HSAMeshTransformer, HSAPointTransformer

__all__ = ['HTEPredictor', 'HSAGraphTransformer', 'HSAPointTransformer', 'HSAMeshTransformer',
           'DEFAULT']
