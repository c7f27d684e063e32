r"""The ranks compare their calls before a distributed attention: every rank
all-gathers a fingerprint of its call (its input refused or not, its share,
the options, the shapes and dtypes), and every rank raises alike when they
would not run one attention together, instead of leaving the others waiting
in a collective."""
from __future__ import annotations

import struct
from typing import List, Sequence

import torch
from torch import Tensor

from hsa_geo.distributed.share import share_of

__all__ = ['fingerprint', 'gather_fingerprints', 'agree', 'column']


# ------------------------------------------------------------ the ranks agree
# The fingerprint every rank sends before the attention: int64 fields, in
# this order.  'error': this rank's input was refused; 'num_roots': its
# top-level nodes (the sizes of the statistics' gather); 'share', 'shards',
# 'index', 'digest': the Share its hierarchy records (shard_forest,
# shard_hierarchy), zeros without one; then the options and shapes.
_FIELDS = ('error', 'num_roots', 'share', 'shards', 'index', 'digest', 'include_self',
           'causal', 'scale', 'heads', 'dim', 'dim_v', 'pos', 'pos_dim', 'dtype_q', 'dtype_v')
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# the fields every rank must have equal, with their names in the messages
_SAME = (('include_self', "'include_self'"), ('causal', "'causal'"), ('scale', "'scale'"),
         ('heads', "the number of heads (q.size(1))"),
         ('dim', "the channels of 'q' and 'k' (q.size(2))"),
         ('dim_v', "the channels of 'v' (v.size(2))"),
         ('pos', "whether 'pos' and 'top_pos' are given"),
         ('pos_dim', "the channels of 'top_pos' (its last size)"),
         ('dtype_q', "the dtype of 'q'"), ('dtype_v', "the dtype of 'v'"))


def fingerprint(error, q, v, hierarchy, top_pos, include_self, causal, scale) -> List[int]:
    if error is not None:
        return [1] + [0] * (len(_FIELDS) - 1)
    share = share_of(hierarchy)
    def code(dtype):
        return _DTYPES.index(dtype) + 1 if dtype in _DTYPES else \
            len(_DTYPES) + 1 + sum(str(dtype).encode())
    index, shards, digest = share if share is not None else (0, 0, 0)
    values = dict(error=0, num_roots=hierarchy.roots.numel(), share=int(share is not None),
                  shards=shards, index=index, digest=digest, include_self=int(include_self),
                  causal=int(causal), scale=struct.unpack('<q', struct.pack('<d', scale))[0],
                  heads=q.size(1), dim=q.size(2), dim_v=v.size(2), pos=int(top_pos is not None),
                  pos_dim=top_pos.size(-1) if top_pos is not None else 0,
                  dtype_q=code(q.dtype), dtype_v=code(v.dtype))
    return [int(values[name]) for name in _FIELDS]


def column(table: List[List[int]], field: str) -> List[int]:
    r"""Every rank's value of :obj:`field` (one of the fingerprint's fields)."""
    return [row[_FIELDS.index(field)] for row in table]


def gather_fingerprints(fingerprint: List[int], q, group):
    r"""Every rank's fingerprint (rank order), this rank and the world size;
    this process alone when :mod:`torch.distributed` is not initialised."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return [fingerprint], 0, 1
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if isinstance(q, Tensor):
        device = q.device
    elif 'nccl' in str(dist.get_backend(group)) and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    mine = torch.tensor(fingerprint, dtype=torch.long, device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine, group=group)
    return [row.tolist() for row in every], rank, world


def _ranks(ranks: Sequence[int]) -> str:
    return (f'rank {ranks[0]}' if len(ranks) == 1 else
            'ranks ' + ', '.join(str(r) for r in ranks))


def _by_value(table, field: str, show) -> str:
    r"""``'<value> on rank 0, <value> on ranks 1, 2'``: the ranks grouped by
    their value of :obj:`field`."""
    index = _FIELDS.index(field)
    groups = {}
    for rank, row in enumerate(table):
        groups.setdefault(row[index], []).append(rank)
    return ', '.join(f'{show(value)} on {_ranks(ranks)}' for value, ranks in groups.items())


def _show(field: str):
    if field in ('include_self', 'causal'):
        return lambda value: str(bool(value))
    if field == 'scale':
        return lambda value: repr(struct.unpack('<d', struct.pack('<q', value))[0])
    if field == 'pos':
        return lambda value: 'given' if value else 'not given'
    if field.startswith('dtype'):
        return lambda value: str(_DTYPES[value - 1]) if 1 <= value <= len(_DTYPES) else \
            'another dtype'
    return str


def agree(table: List[List[int]], rank: int, world: int, error) -> None:
    r"""Raises, on every rank alike, when the ranks' fingerprints show that
    they would not run one attention together (this rank's own input error
    first)."""
    at = {name: i for i, name in enumerate(_FIELDS)}
    failed = [r for r, row in enumerate(table) if row[at['error']]]
    if error is not None:
        raise error
    if failed:
        raise ValueError(f"distributed_hsa: {_ranks(failed)} refused "
                         f"{'its' if len(failed) == 1 else 'their'} input (see the error "
                         f"raised there), so no rank runs the attention")
    def column(name):
        return [row[at[name]] for row in table]
    with_share = [r for r, value in enumerate(column('share')) if value]
    if with_share and len(with_share) != world:
        without = [r for r in range(world) if r not in with_share]
        raise ValueError(f"distributed_hsa: 'hierarchy' is a share from shard_forest or "
                         f"shard_hierarchy on {_ranks(with_share)} but not on "
                         f"{_ranks(without)}: every rank must pass its share of the same split")
    if with_share:
        shares = [f'share {row[at["index"]]} of a split over {row[at["shards"]]} ranks on '
                  f'rank {r}' for r, row in enumerate(table)]
        if any(value != world for value in column('shards')):
            import torch.distributed as dist
            alone = '' if dist.is_available() and dist.is_initialized() else \
                ' (torch.distributed is not initialised: this process is alone)'
            raise ValueError(f"distributed_hsa: 'hierarchy' is {', '.join(shares)}, but the "
                             f"process group has {world} rank{'s' if world > 1 else ''}"
                             f"{alone}: split for the group's size (shard_forest's "
                             f"'num_shards', shard_hierarchy's 'world_size')")
        if column('index') != list(range(world)):
            raise ValueError(f"distributed_hsa: every rank must pass its own share ('hierarchy'"
                             f" of rank r is share r of the split), got {', '.join(shares)}")
        if len(set(column('digest'))) > 1:
            raise ValueError(f"distributed_hsa: the ranks' 'hierarchy' shares come from "
                             f"different hierarchies (digest "
                             f"{_by_value(table, 'digest', lambda d: f'{d:016x}')}): every rank "
                             f"must split the same hierarchy")
    for field, name in _SAME:
        if len(set(column(field))) > 1:
            raise ValueError(f"distributed_hsa: the ranks disagree on {name}: "
                             f"{_by_value(table, field, _show(field))}; every rank must pass "
                             f"the same")
