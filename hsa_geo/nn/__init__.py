r"""Neural-network layers built on Hierarchical Self-Attention."""
from hsa_geo.nn.conv import HSAConv
from hsa_geo.nn.encoder import HSAEncoderLayer, HSATransformer
from hsa_geo.nn.gps import HSAGPSConv
from hsa_geo.nn.models import (
                               HSAGraphTransformer,
                               HSAMeshTransformer,
                               HSAPointTransformer,
                               HTEPredictor,
)
from hsa_geo.nn.point_block import PointTransformerBlock
from hsa_geo.nn.pool import (
                               depth_pool,
                               leaf_tree,
                               leaf_type_pool,
                               root_pool,
                               subtree_pool,
                               type_pool,
)

__all__ = [
    'HSAConv',
    'HSAGPSConv',
    'HSAEncoderLayer',
    'HSATransformer',
    'HTEPredictor',
    'HSAGraphTransformer',
    'HSAPointTransformer',
    'HSAMeshTransformer',
    'PointTransformerBlock',
    'subtree_pool',
    'root_pool',
    'leaf_type_pool',
    'leaf_tree',
    'depth_pool',
    'type_pool',
]
