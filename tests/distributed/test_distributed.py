r"""Exact HSA across processes (hsa_geo.distributed): equal to single-process
HSA over the whole tree, values and gradients, in float64."""
import json
import pathlib
import subprocess
import sys

import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo.distributed import communicated_bytes, distributed_hsa, shard_forest
from hsa_geo.testing import random_forest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _whole(parent: torch.Tensor, num_leaves: int) -> Hierarchy:
    r"""The forest's roots as the children of one new root."""
    num_nodes = parent.numel()
    return Hierarchy.from_parent(torch.cat([torch.where(parent < 0, num_nodes, parent),
                                            torch.tensor([-1])]), num_leaves)


def _inputs(n, num_nodes, seed, heads=2, dim=3, dim_v=4):
    gen = torch.Generator().manual_seed(seed)
    def make(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64,
                                          requires_grad=True)
    return make(n, heads, dim), make(n, heads, dim), make(n, heads, dim_v), \
        make(num_nodes + 1, heads, 2)


FORESTS = [  # (parent, num_leaves): ragged forests and the degenerate shapes
    *(random_forest(seed, num_roots=4, max_depth=3, max_branching=4) for seed in range(4)),
    (torch.tensor([-1, -1, -1]), 3),                 # top-level leaves only
    (torch.tensor([3, 3, -1, 4, -1]), 3),            # a lone top-level leaf, a chain
    (torch.tensor([2, 3, -1, -1]), 2),               # single-leaf chains only
    (torch.tensor([4, 4, 4, 4, -1]), 4),             # one subtree: nothing outside it
]


@pytest.mark.parametrize('include_self,causal', [(False, False), (True, False),
                                                  (False, True), (True, True)])
@pytest.mark.parametrize('index', range(len(FORESTS)))
def test_one_process_equals_hsa_over_the_whole_tree(index, include_self, causal):
    parent, n = FORESTS[index]
    forest = Hierarchy.from_parent(parent, n)
    q, k, v, pos = _inputs(n, parent.numel(), index)
    options = dict(include_self=include_self, causal=causal)
    ref = hsa(q, k, v, _whole(parent, n), pos=pos, **options)
    out = distributed_hsa(q, k, v, forest, pos=pos[:-1], top_pos=pos[forest.roots], **options)
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    ref_grads = torch.autograd.grad(ref.sin().sum(), (q, k, v, pos))
    grads = torch.autograd.grad(out.sin().sum(), (q, k, v, pos))
    for g, r in zip(grads, ref_grads):
        assert torch.isfinite(g).all()
        assert torch.allclose(g, r, atol=1e-11, rtol=0)


def test_without_positions_and_in_float32():
    parent, n = FORESTS[0]
    forest = Hierarchy.from_parent(parent, n)
    q, k, v, _ = _inputs(n, parent.numel(), 9)
    ref = hsa(q, k, v, _whole(parent, n))
    assert torch.allclose(distributed_hsa(q, k, v, forest), ref, atol=1e-12, rtol=0)
    out32 = distributed_hsa(q.float(), k.float(), v.float(), forest)
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), ref, atol=1e-5)


def test_shard_forest_splits_whole_subtrees():
    parent, n = random_forest(1, num_roots=7, max_depth=3, max_branching=4)
    forest = Hierarchy.from_parent(parent, n)
    shards = shard_forest(forest, 3)
    assert sum(s[0].num_roots for s in shards) == 7 and all(s[0].num_roots for s in shards)
    assert torch.equal(torch.cat([s[1] for s in shards]).sort().values, torch.arange(n))
    assert torch.equal(torch.cat([s[2] for s in shards]).sort().values,
                       torch.arange(parent.numel()))
    for local, _leaf_ids, node_ids in shards:
        # the local forest is the same trees: parents map back to parents
        inner = local.parent >= 0
        assert torch.equal(node_ids[local.parent[inner]], parent[node_ids[inner]])
    with pytest.raises(ValueError, match="'num_shards' \\(8\\) exceeds"):
        shard_forest(forest, 8)


def test_bytes_do_not_grow_with_the_leaves():
    assert communicated_bytes(64, 4, 16, 16) == 64 * 4 * 33 * 4
    parent, n = FORESTS[0]
    forest = Hierarchy.from_parent(parent, n)
    q, k, v, pos = _inputs(n, parent.numel(), 0)
    with pytest.raises(ValueError, match="'top_pos' must be \\[4, c\\] or \\[4, heads=2"):
        distributed_hsa(q, k, v, forest, pos=pos[:-1], top_pos=pos[:1])
    with pytest.raises(ValueError, match="'pos' must be \\[%d, c\\]" % parent.numel()):
        distributed_hsa(q, k, v, forest, pos=pos, top_pos=pos[forest.roots])
    with pytest.raises(ValueError, match="pass 'pos' and 'top_pos' together"):
        distributed_hsa(q, k, v, forest, pos=pos[:-1])
    with pytest.raises(ValueError, match="'q' has %d rows but 'hierarchy' has %d" % (n - 1, n)):
        distributed_hsa(q[1:], k[1:], v[1:], forest)
    with pytest.raises(TypeError, match="'hierarchy' must be a compiled Hierarchy"):
        distributed_hsa(q, k, v, parent)


def _torchrun(script: str, port: int, out_dir, timeout: int) -> None:
    r"""Runs ``tests/distributed/<script>`` on 2 gloo ranks, writing to
    :obj:`out_dir`; fails the test unless both ranks exit cleanly."""
    out = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={port}', str(ROOT / 'tests' / 'distributed' / script),
         str(out_dir)],
        capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason='needs torch.distributed')
def test_two_ranks_with_gloo_equal_one_process(tmp_path):
    _torchrun('worker.py', 29517, tmp_path, timeout=600)
    nodes = 0
    for rank in range(2):
        report = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert len(report['hsa']) == 3
        for errors in report['hsa']:
            for key in ('out', 'q', 'k', 'v', 'pos'):
                assert errors[key] < 1e-12, (rank, errors)
        # DDP over ShardedHierarchy shares: the outputs of full-batch HSA and
        # the gradients of full-batch training (float64)
        ddp = report['ddp']
        assert ddp['out'] < 1e-11 and ddp['grad'] < 1e-11, (rank, ddp)
        assert ddp['unused_match'], (rank, ddp)
        assert 0 < ddp['nodes'] < 600
        assert report['causal_mixed'] < 1e-12, rank
        nodes += ddp['nodes']
    assert nodes == 600


def _graph_hierarchy(num_nodes=300):
    from hsa_geo.datasets import planted_node_dataset
    from hsa_geo.transforms import GraphHierarchy
    graph = planted_node_dataset(num_nodes, avg_degree=8, num_parts=(4, 4),
                                 within=(0.6, 0.3), num_features=5, num_classes=3, seed=1)
    del graph.planted
    return GraphHierarchy(method='metis', num_parts=(4, 4), pos_dim=3)(graph)


@pytest.mark.parametrize('include_self', [False, True])
def test_sharded_hierarchy_in_a_layer_equals_the_whole_tree(include_self):
    from hsa_geo.distributed import ShardedHierarchy, shard_hierarchy
    from hsa_geo.nn import HSAConv
    data = _graph_hierarchy()
    whole = Hierarchy.from_hetero(data)
    torch.manual_seed(0)
    conv = HSAConv(5, 4, heads=2, pos_channels=3, include_self=include_self).double()
    x = data['node'].x.double()
    pos = {t: data[t].hsa_pos.double() for t in data.node_types}
    ref = conv(x, whole, pos=pos)
    part, sharded = shard_hierarchy(data, 0, 1)        # one rank holds everything
    assert isinstance(sharded, ShardedHierarchy) and sharded.num_leaves == 300
    assert sharded.subtrees.num_roots == 4 and sharded.node_slices == whole.node_slices
    moved = sharded.to('cpu')                     # moving keeps it sharded
    assert isinstance(moved, ShardedHierarchy) and isinstance(sharded.cpu(), ShardedHierarchy)
    assert torch.equal(moved.keep, sharded.keep) and moved.subtrees == sharded.subtrees
    out = conv(part['node'].x.double(), sharded,
               pos={t: part[t].hsa_pos.double() for t in part.node_types})
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match='this rank'):
        conv(x, sharded, pos=pos, return_attention_weights=True)
    with pytest.raises(ValueError, match='this rank'):
        conv.attention_weights(x, sharded, pos=pos)
    # pooling over the root would be this rank's share: refused; below it, exact
    from hsa_geo.nn import leaf_tree, root_pool, type_pool
    for pool in (lambda: root_pool(out, sharded), lambda: leaf_tree(sharded),
                 lambda: type_pool(out, sharded, 'root')):
        with pytest.raises(TypeError, match="this rank's subtrees only"):
            pool()
    assert torch.allclose(type_pool(out, sharded, 'community2'),
                          type_pool(ref, whole, 'community2'), atol=1e-12)


def test_shard_hierarchy_splits_the_top_level_subtrees():
    from hsa_geo.distributed import ShardedHierarchy, shard_hierarchy
    data = _graph_hierarchy()
    parts = [shard_hierarchy(data, rank, 3) for rank in range(3)]
    ids = torch.cat([part['node'].n_id for part, _ in parts])
    assert torch.equal(ids.sort().values, torch.arange(300))          # each node once
    assert sum(h.subtrees.num_roots for _, h in parts) == 4
    for part, sharded in parts:
        assert sharded.num_roots == 1 and sharded.num_leaves == part['node'].num_nodes
    with pytest.raises(ValueError, match="4 top-level subtrees, fewer than 'world_size'"):
        shard_hierarchy(data, 0, 5)
    with pytest.raises(ValueError, match="'rank' must be at most 2"):
        shard_hierarchy(data, 3, 3)
    forest = Hierarchy.from_parent(torch.tensor([2, 3, -1, -1]), 2)
    with pytest.raises(ValueError, match='one tree whose root'):
        ShardedHierarchy(forest)
    with pytest.raises(TypeError, match='compiled Hierarchy'):
        ShardedHierarchy(forest.parent)
    _, sharded = parts[0]
    n = sharded.num_leaves
    q = torch.randn(n, 1, 2)
    with pytest.raises(ValueError, match="no 'bias' and no 'dropout'"):
        hsa(q, q, q, sharded, dropout=0.1)
    with pytest.raises(ValueError, match=r"'pos' must be \[\d+, c\].*got \[3, 2\]"):
        hsa(q, q, q, sharded, pos=torch.randn(3, 2))


@pytest.mark.parametrize('include_self,causal', [(False, False), (True, True)])
def test_large_scores_and_half_precision(include_self, causal):
    # the ghost's score follows the subtree's own scores: no share underflows
    parent, n = FORESTS[1]
    forest, whole = Hierarchy.from_parent(parent, n), _whole(parent, n)
    q, k, v, pos = _inputs(n, parent.numel(), 5)
    options = dict(include_self=include_self, causal=causal)
    # every score shifted by the same amount (a constant first channel): the
    # sharded form must follow single-process HSA in float32 too
    for shift in (95.0, -95.0):
        qs, ks = q.detach().clone(), k.detach().clone()
        qs[..., 0], ks[..., 0] = 1.0, shift * q.size(-1) ** 0.5
        ref = hsa(qs, ks, v, whole, **options)
        for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            qd, kd = qs.to(dtype).requires_grad_(), ks.to(dtype)
            out = distributed_hsa(qd, kd, v.to(dtype), forest, **options)
            assert torch.allclose(out.double(), ref, atol=atol), (shift, dtype)
            grad, = torch.autograd.grad(out.sum(), qd)
            assert torch.isfinite(grad).all()
    # float16 inputs are computed in float32, as hsa() does
    half = distributed_hsa(q.half(), k.half(), v.half(), forest, **options)
    assert half.dtype == torch.float16
    ref = hsa(q.half(), k.half(), v.half(), whole, **options)
    assert torch.allclose(half.float(), ref.float(), atol=2e-3)


# ------------------------------------------- shares, forests and clear errors
def test_shard_forest_takes_integral_scalars():
    import numpy as np
    forest = Hierarchy.from_parent(*FORESTS[0])
    ref = shard_forest(forest, 2)
    for count in (np.int64(2), torch.tensor(2)):
        for (a, *ids_a), (b, *ids_b) in zip(shard_forest(forest, count), ref):
            assert a == b and all(torch.equal(x, y) for x, y in zip(ids_a, ids_b))


def _two_trees():
    from torch_geometric.data import HeteroData
    data = HeteroData()
    gen = torch.Generator().manual_seed(0)
    data['tok'].x = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    data['grp'].num_nodes, data['root'].num_nodes = 4, 2
    data['tok', 'in', 'grp'].edge_index = torch.tensor([list(range(12)),
                                                        [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]])
    data['grp', 'in', 'root'].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    return data


def test_shard_hierarchy_refuses_a_forest():
    # two independent trees: rank 0 would get one, rank 1 the other, and the
    # attention would couple them as one family (a wrong result, no error)
    from hsa_geo.distributed import shard_hierarchy
    data = _two_trees()
    for rank in range(2):
        with pytest.raises(ValueError, match="'data' has 2 roots.*shards one tree"):
            shard_hierarchy(data, rank, 2)


def test_shares_record_what_they_are():
    from hsa_geo.distributed import ShardedHierarchy, shard_hierarchy
    from hsa_geo.distributed.shard import share_of
    forest = Hierarchy.from_parent(*FORESTS[0])
    other = Hierarchy.from_parent(*FORESTS[1])
    shares = [share_of(local) for local, _, _ in shard_forest(forest, 3)]
    assert [(s.index, s.num_shards) for s in shares] == [(0, 3), (1, 3), (2, 3)]
    assert len({s.digest for s in shares}) == 1
    assert share_of(shard_forest(other, 3)[0][0]).digest != shares[0].digest
    assert share_of(forest) is None
    data = _graph_hierarchy()
    infos = [share_of(shard_hierarchy(data, rank, 2)[1]) for rank in range(2)]
    assert [(s.index, s.num_shards) for s in infos] == [(0, 2), (1, 2)]
    assert infos[0].digest == infos[1].digest
    moved = shard_hierarchy(data, 1, 2)[1].to('cpu')
    assert share_of(moved) == infos[1] and share_of(moved.subtrees) == infos[1]
    # a part saved and loaded (examples/ogbn_node_ddp.py) carries its share
    import io
    part = shard_hierarchy(data, 1, 2)[0]
    buffer = io.BytesIO()
    torch.save(part, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    rebuilt = ShardedHierarchy(Hierarchy.from_hetero(loaded), share=loaded.hsa_share)
    assert share_of(rebuilt) == infos[1] and share_of(rebuilt.subtrees) == infos[1]
    with pytest.raises(TypeError, match="'share' must be a Share"):
        ShardedHierarchy(Hierarchy.from_hetero(loaded), share='rank 1')
    with pytest.raises(ValueError, match="0 <= index < num_shards"):
        ShardedHierarchy(Hierarchy.from_hetero(loaded), share=(2, 2, 5))
    # a share of several used in a single process: refused, not half the answer
    local, leaf_ids, _ = shard_forest(forest, 2)[1]
    q, k, v, _ = _inputs(local.num_leaves, local.num_nodes, 0)
    with pytest.raises(ValueError, match="'hierarchy' is share 1 of a split over 2 ranks"):
        distributed_hsa(q, k, v, local)
    alone, _, _ = shard_forest(forest, 1)[0]
    q, k, v, _ = _inputs(alone.num_leaves, alone.num_nodes, 0)
    assert torch.allclose(distributed_hsa(q, k, v, alone), distributed_hsa(q, k, v, forest))


def test_root_sharing_its_type_with_clusters_is_sharded():
    # the root and the clusters below it are all of type 'node': the root is
    # found at the node level (it used to find no subtree below any root)
    from hsa_geo.distributed import shard_hierarchy
    from hsa_geo.nn import HSAConv
    from hsa_geo.testing import hetero_forest
    data = hetero_forest(1, channels=4)
    whole = Hierarchy.from_hetero(data)
    torch.manual_seed(0)
    conv = HSAConv(4, 3, heads=2, causal=True).double()
    ref = conv(data['leaf'].x.double(), whole)
    part, sharded = shard_hierarchy(data, 0, 1)
    assert sharded.subtrees.num_roots == 4
    assert torch.allclose(conv(part['leaf'].x.double(), sharded), ref, atol=1e-12, rtol=0)
    parts = [shard_hierarchy(data, rank, 3)[0] for rank in range(3)]
    ids = torch.cat([p['leaf'].n_id for p in parts])
    assert torch.equal(ids.sort().values, torch.arange(whole.num_leaves))   # each once
    assert all(p['leaf'].num_nodes for p in parts)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason='needs torch.distributed')
def test_ranks_that_disagree_all_get_the_same_error(tmp_path):
    _torchrun('disagree_worker.py', 29523, tmp_path, timeout=300)
    expected = {   # scenario: words every rank's ValueError names
        'rank0_share': ["'hierarchy'", 'rank 1', 'share 0'],
        'other_world': ["'hierarchy'", '3 ranks', 'group has 2'],
        'other_hierarchy': ["'hierarchy'", 'different hierarchies', 'rank 0', 'rank 1'],
        'causal_one_rank': ["'causal'", 'True on rank 0', 'False on rank 1'],
        'include_self_one_rank': ["'include_self'", 'False on rank 0', 'True on rank 1'],
        'scale_one_rank': ["'scale'", '0.5 on rank 0', '0.25 on rank 1'],
        'heads_differ': ['heads', '2 on rank 0', '3 on rank 1'],
        'dtype_differs': ['dtype', 'torch.float32 on rank 0', 'torch.float64 on rank 1'],
        'pos_one_rank': ["'pos'", 'rank 0', 'rank 1'],
        'sharded_rank0_share': ["'hierarchy'", 'rank 1', 'share 0'],
        'sharded_causal_one_rank': ["'causal'", 'True on rank 0', 'False on rank 1'],
        'sharded_pos_one_rank': ["'pos'", 'rank 0', 'rank 1'],
    }
    reports = [json.loads((tmp_path / f'rank{rank}.json').read_text()) for rank in range(2)]
    for name, words in expected.items():
        messages = [report[name].get('message') for report in reports]
        for rank, report in enumerate(reports):
            assert report[name]['type'] == 'ValueError', (name, rank, report[name])
            missing = [w for w in words if w not in report[name]['message']]
            assert not missing, (name, rank, missing, report[name]['message'])
        assert messages[0] == messages[1], (name, messages)     # the same error everywhere
    # bad input on rank 1 only: rank 1 raises its own error, rank 0 does not wait
    bad = [report['bad_input_one_rank'] for report in reports]
    assert bad[1]['type'] == 'ValueError' and "'q' has" in bad[1]['message'], bad
    assert bad[0]['type'] == 'ValueError' and 'rank 1' in bad[0]['message'], bad
    for rank, report in enumerate(reports):
        assert report['after'] < 1e-12, rank                # the group still works
        assert report['cluster_root'] < 1e-12, rank


def test_sharded_attention_refuses_bias_dropout_and_bad_positions():
    from hsa_geo.distributed import shard_hierarchy
    part, sharded = shard_hierarchy(_graph_hierarchy(), 0, 1)
    q = torch.randn(sharded.num_leaves, 1, 2)
    with pytest.raises(ValueError, match="no 'bias' and no 'dropout'"):
        sharded.attention(q, q, q, dropout=0.1)
    with pytest.raises(ValueError, match="no 'bias' and no 'dropout'"):
        sharded.attention(q, q, q, bias=torch.zeros(1))
    with pytest.raises(ValueError, match="'pos' must be \\[%d, c\\]" % sharded.num_nodes):
        sharded.attention(q, q, q, pos=torch.randn(3, 2))
    assert sharded.attention(q, q, q).shape == q.shape
