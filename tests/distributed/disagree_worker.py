r"""Run by tests/distributed/test_distributed.py under ``torchrun --nproc_per_node=2``
(gloo, CPU): ranks that call the distributed attention with inputs that do
not fit together (another rank's share, shares made for another world size or
from another hierarchy, options, shapes or positions on one rank only, bad
input on one rank) must all get a ValueError, neither a hang nor an abort nor
a wrong result; afterwards the group still works.  Also: a tree whose root
shares its node type with the clusters below it, sharded over the ranks,
equals single-process HSA.  Writes ``rank<r>.json``: every scenario's
exception type and message (or, when none was raised, the largest error
against single-process HSA)."""
import datetime
import json
import os
import sys

import torch
import torch.distributed as dist

from hsa_geo import Hierarchy, hsa
from hsa_geo.distributed import distributed_hsa, shard_forest, shard_hierarchy
from hsa_geo.testing import hetero_forest, random_forest


def whole_of(parent: torch.Tensor, n: int) -> Hierarchy:
    num_nodes = parent.numel()
    return Hierarchy.from_parent(torch.cat([torch.where(parent < 0, num_nodes, parent),
                                            torch.tensor([-1])]), n)


def main(out_dir: str):
    # a short timeout: a rank left waiting in a collective fails instead of hanging
    dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    parent, n = random_forest(0, num_roots=5, max_depth=3, max_branching=4)
    other_parent, other_n = random_forest(1, num_roots=5, max_depth=3, max_branching=4)
    forest = Hierarchy.from_parent(parent, n)
    other = Hierarchy.from_parent(other_parent, other_n)
    num_nodes = parent.numel()
    gen = torch.Generator().manual_seed(0)              # the same inputs on every rank
    q, k = (torch.randn(n, 2, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(n, 2, 4, generator=gen, dtype=torch.float64)
    pos = torch.randn(num_nodes + 1, 2, 2, generator=gen, dtype=torch.float64)
    ref = hsa(q, k, v, whole_of(parent, n), pos=pos)
    ref_causal = hsa(q, k, v, whole_of(parent, n), causal=True)

    def run(share, hierarchy=forest, dtype=torch.float64, heads=2, drop_row=False,
            with_pos=True, **options):
        local, leaf_ids, node_ids = share
        gen = torch.Generator().manual_seed(0)
        qh, kh = (torch.randn(hierarchy.num_leaves, heads, 3, generator=gen, dtype=dtype)
                  for _ in range(2))
        vh = torch.randn(hierarchy.num_leaves, heads, 4, generator=gen, dtype=dtype)
        mine = [t[leaf_ids] for t in (qh, kh, vh)]
        if drop_row:
            mine = [t[1:] for t in mine]
        kwargs = {}
        if with_pos and hierarchy is forest:
            roots = hierarchy.roots[torch.isin(hierarchy.roots, node_ids)]
            kwargs = dict(pos=pos[node_ids].to(dtype), top_pos=pos[roots].to(dtype))
        out = distributed_hsa(*mine, local, **kwargs, **options)
        expected = ref_causal if options.get('causal') else ref
        if not with_pos:
            expected = hsa(q, k, v, whole_of(parent, n), **options)
        return (out.double() - expected[leaf_ids]).abs().max().item()

    mine = shard_forest(forest, world)[rank]
    scenarios = {
        # every rank passes rank 0's share
        'rank0_share': lambda: run(shard_forest(forest, world)[0]),
        # shares made for three ranks
        'other_world': lambda: run(shard_forest(forest, world + 1)[rank]),
        # rank 1's share comes from another hierarchy
        'other_hierarchy': lambda: run(mine, with_pos=False) if rank == 0 else
        run(shard_forest(other, world)[rank], hierarchy=other, with_pos=False),
        'causal_one_rank': lambda: run(mine, with_pos=False, causal=rank == 0),
        'include_self_one_rank': lambda: run(mine, include_self=rank == 1),
        'scale_one_rank': lambda: run(mine, scale=0.5 if rank == 0 else 0.25),
        'heads_differ': lambda: run(mine, with_pos=False, heads=2 + rank),
        'dtype_differs': lambda: run(mine, dtype=torch.float64 if rank else torch.float32),
        # pos on rank 0 only: used to kill rank 1 with a gloo abort
        'pos_one_rank': lambda: run(mine, with_pos=rank == 0),
        # a local error on rank 1 only: rank 0 must not wait for it forever
        'bad_input_one_rank': lambda: run(mine, drop_row=rank == 1),
        # the same through ShardedHierarchy (what the layers use)
        'sharded_rank0_share': lambda: sharded('rank0_share', rank, world),
        'sharded_causal_one_rank': lambda: sharded('causal_one_rank', rank, world),
        'sharded_pos_one_rank': lambda: sharded('pos_one_rank', rank, world),
    }
    report = {}
    for name, scenario in scenarios.items():
        try:
            report[name] = {'type': None, 'error': scenario()}
        except Exception as error:   # noqa: BLE001  (what was raised, for the test)
            report[name] = {'type': type(error).__name__, 'message': str(error)}
    # the group still works: a correct call after all the refused ones
    report['after'] = run(mine)
    report['cluster_root'] = cluster_root(rank, world)
    dist.barrier()
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(report, f)
    dist.destroy_process_group()


def graph_tree():
    from hsa_geo.datasets import planted_node_dataset
    from hsa_geo.transforms import GraphHierarchy
    graph = planted_node_dataset(120, avg_degree=6, num_parts=(4, 2), within=(0.6, 0.3),
                                 num_features=4, num_classes=2, seed=0)
    del graph.planted
    return GraphHierarchy(method='metis', num_parts=(4, 2), pos_dim=2)(graph)


def sharded(kind: str, rank: int, world: int) -> float:
    data = graph_tree()
    part, share = shard_hierarchy(data, 0 if kind == 'rank0_share' else rank, world)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(share.num_leaves, 2, 3, generator=gen, dtype=torch.float64)
    pos = torch.randn(share.num_nodes, 2, generator=gen, dtype=torch.float64)
    hsa(q, q, q, share, pos=pos if kind != 'pos_one_rank' or rank == 0 else None,
        causal=kind == 'causal_one_rank' and rank == 0)
    return float('nan')        # no reference: it must not get here


def cluster_root(rank: int, world: int) -> float:
    r"""A tree whose root and inner clusters are all of type ``'node'``
    (:func:`hsa_geo.testing.hetero_forest`), its top-level subtrees spread
    over the ranks, against single-process HSA over the whole tree."""
    from hsa_geo.nn import HSAConv
    data = hetero_forest(1, channels=4)
    torch.manual_seed(0)
    conv = HSAConv(4, 3, heads=2, causal=True).double()
    ref = conv(data['leaf'].x.double(), Hierarchy.from_hetero(data))
    part, share = shard_hierarchy(data, rank, world)
    out = conv(part['leaf'].x.double(), share)
    return (out - ref[part['leaf'].n_id]).abs().max().item()


if __name__ == '__main__':
    main(sys.argv[1])
