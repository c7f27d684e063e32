r"""Neural-network layers built on Hierarchical Self-Attention."""
from hsa_geo.nn.conv import HSAConv

__all__ = ['HSAConv']
