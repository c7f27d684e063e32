r"""Exact Hierarchical Self-Attention across processes: one hierarchy's
top-level subtrees spread over the ranks of a :mod:`torch.distributed`
process group, the attention global and exact (:func:`distributed_hsa`),
every HSA layer usable on a rank's share through a
:class:`ShardedHierarchy` (e.g. under ``DistributedDataParallel``)."""
from hsa_geo.distributed.attention import distributed_hsa
from hsa_geo.distributed.shard import (
                                       ShardedHierarchy,
                                       communicated_bytes,
                                       shard_forest,
                                       shard_hierarchy,
)

__all__ = ['distributed_hsa', 'ShardedHierarchy', 'shard_hierarchy', 'shard_forest',
           'communicated_bytes']
