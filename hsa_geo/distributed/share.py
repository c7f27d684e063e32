r"""What a share of a hierarchy split over processes is: its index, the
number of shares and a digest of the whole hierarchy, recorded when it is
split (:func:`~hsa_geo.distributed.shard_forest`,
:func:`~hsa_geo.distributed.shard_hierarchy`) and compared across the ranks
before every distributed attention."""
from __future__ import annotations

import hashlib
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from hsa_geo._checks import as_int
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike

__all__ = ['Share', 'as_share', 'share_of', 'digest']


class Share(NamedTuple):
    r"""What a share of a hierarchy is, recorded by :func:`shard_forest` and
    :func:`shard_hierarchy` and checked across the ranks by
    :func:`~hsa_geo.distributed.distributed_hsa` before anything else: the
    share's index (the rank it is for), the number of shares (the world size
    it was made for) and a digest of the whole hierarchy."""
    index: int
    num_shards: int
    digest: int


def as_share(share) -> Share:
    r""":obj:`share` as a :class:`Share`: one, or a triple of ints."""
    try:
        index, num_shards, digest = (as_int(x, 'share') for x in share)
    except (TypeError, ValueError):
        raise TypeError(f"'share' must be a Share (index, num_shards, digest), e.g. the "
                        f"'hsa_share' of a part from shard_hierarchy, got {share!r}") from None
    if not 0 <= index < num_shards:
        raise ValueError(f"'share' must have 0 <= index < num_shards, got {share!r}")
    return Share(index, num_shards, digest)


def share_of(hierarchy) -> Optional[Share]:
    r"""The :class:`Share` a hierarchy from :func:`shard_forest` or
    :func:`shard_hierarchy` records, :obj:`None` for any other (e.g. one
    built by hand, or moved with :meth:`Hierarchy.to`, which keeps no
    metadata)."""
    if isinstance(hierarchy, Hierarchy):
        share = hierarchy.__dict__.get('_hsa_share')  # a plain triple once loaded from a file
        return None if share is None else Share(*share)
    # a ShardedHierarchy records it in its own slot
    return getattr(hierarchy, '_share', None) if isinstance(hierarchy, HierarchyLike) else None


def digest(*parts) -> int:
    r"""A 63-bit digest of integer tensors (their values, on the CPU) and of
    plain values (their ``repr``): equal on every process for equal input."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, Tensor):
            part = part.detach().to(device='cpu', dtype=torch.long).contiguous()
            h.update(repr(tuple(part.shape)).encode())
            h.update(part.numpy().tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b'|')
    return int.from_bytes(h.digest(), 'little') & (2 ** 63 - 1)
