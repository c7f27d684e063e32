r"""Neural-network layers built on Hierarchical Self-Attention."""
from hsa_geo.nn.conv import HSAConv
from hsa_geo.nn.gps import HSAGPSConv

__all__ = ['HSAConv', 'HSAGPSConv']
