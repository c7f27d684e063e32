import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hsa_geo import Hierarchy, hsa
from hsa_geo.reference import hsa_dense
from hsa_geo.testing import degenerate_forests, flat_tree, random_forest, regular_tree

# every test on both CPU paths of the engine (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('engine_path')


def _inputs(h, heads, dim, dim_v, seed, dtype=torch.float64, pos=None, bias=None,
            spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    n = h.num_leaves
    q = torch.randn(n, heads, dim, generator=gen, dtype=dtype) * spread
    k = torch.randn(n, heads, dim, generator=gen, dtype=dtype) * spread
    v = torch.randn(n, heads, dim_v, generator=gen, dtype=dtype)
    p = b = None
    if pos == 'shared':
        p = torch.randn(h.num_nodes, 3, generator=gen, dtype=dtype) * 0.7
    elif pos == 'heads':
        p = torch.randn(h.num_nodes, heads, 2, generator=gen, dtype=dtype) * 0.7
    if bias == 'shared':
        b = torch.randn(h.num_pairs, generator=gen, dtype=dtype)
    elif bias == 'heads':
        b = torch.randn(h.num_pairs, heads, generator=gen, dtype=dtype)
    return q, k, v, p, b


@given(seed=st.integers(0, 10**6), num_roots=st.integers(1, 4),
       max_depth=st.integers(1, 4), max_branching=st.integers(1, 5),
       heads=st.integers(1, 3), pos=st.sampled_from([None, 'shared', 'heads']),
       bias=st.sampled_from([None, 'shared', 'heads']),
       include_self=st.booleans(), causal=st.booleans())
def test_dp_equals_dense_reference_on_random_forests(seed, num_roots, max_depth,
                                                     max_branching, heads, pos,
                                                     bias, include_self, causal):
    parent, num_leaves = random_forest(seed, num_roots, max_depth, max_branching)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, heads, 4, 3, seed, pos=pos, bias=bias)
    out = hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
    ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self,
                    causal=causal)
    assert out.shape == (num_leaves, heads, 3)
    assert torch.allclose(out, ref, atol=1e-12, rtol=1e-10), (out - ref).abs().max()


@pytest.mark.parametrize('sizes', [[40, 1, 3, 2, 5, 5, 5, 6, 7, 9, 11, 30, 31]])
def test_padded_buckets_match_reference(sizes):
    # Many small families of different sizes are merged into padded buckets.
    parent, next_id, leaves = [], sum(sizes), 0
    for fam, size in enumerate(sizes):
        parent += [next_id + fam] * size
        leaves += size
    parent += [next_id + len(sizes)] * len(sizes) + [-1]
    h = Hierarchy.from_parent(torch.tensor(parent), leaves)
    assert any(c.padded for c in h.layout.classes())
    for include_self in (False, True):
        for causal in (False, True):
            q, k, v, p, b = _inputs(h, 2, 4, 5, 1, pos='heads', bias='heads')
            out = hsa(q, k, v, h, pos=p, bias=b, include_self=include_self,
                      causal=causal)
            ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self,
                            causal=causal)
            assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize('n', [1, 2, 7, 33])
def test_flat_tree_is_softmax_without_diagonal(n):
    h = Hierarchy.from_parent(*flat_tree(n))
    q, k, v, _, _ = _inputs(h, 2, 8, 5, n)
    out = hsa(q, k, v, h)
    scores = torch.einsum('ihd,jhd->hij', q, k) / math.sqrt(8)
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf)
    expected = torch.einsum('hij,jhd->ihd', torch.softmax(scores, -1).nan_to_num(), v)
    assert torch.allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize('n', [1, 5, 33])
@pytest.mark.parametrize('causal', [False, True])
def test_flat_tree_with_self_is_sdpa(n, causal):
    h = Hierarchy.from_parent(*flat_tree(n))
    q, k, v, _, _ = _inputs(h, 3, 8, 8, n)
    out = hsa(q, k, v, h, include_self=True, causal=causal)
    expected = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
        is_causal=causal).transpose(0, 1)
    assert torch.allclose(out, expected, atol=1e-12)


def test_flat_causal_without_self_is_strictly_lower_softmax():
    n = 9
    h = Hierarchy.from_parent(*flat_tree(n))
    q, k, v, _, _ = _inputs(h, 2, 4, 4, 0)
    out = hsa(q, k, v, h, causal=True)
    scores = torch.einsum('ihd,jhd->hij', q, k) / 2.0
    allowed = torch.ones(n, n, dtype=torch.bool).tril(-1)
    attn = torch.softmax(scores.masked_fill(~allowed, -math.inf), -1).nan_to_num()
    assert torch.allclose(out, torch.einsum('hij,jhd->ihd', attn, v), atol=1e-12)
    assert torch.all(out[0] == 0)


def test_forest_roots_never_interact():
    trees = [random_forest(s, 1, 3, 4, shuffle=False) for s in (3, 4, 5)]
    outs = []
    # each tree alone
    for parent, num_leaves in trees:
        h = Hierarchy.from_parent(parent, num_leaves)
        q, k, v, _, _ = _inputs(h, 2, 4, 4, num_leaves)
        outs.append((q, k, v, hsa(q, k, v, h)))
    # the same trees as one forest: leaves first, then internal nodes
    total_leaves = sum(n for _, n in trees)
    leaf_base, internal_base = 0, total_leaves
    mapped = []
    for parent, num_leaves in trees:
        ids = torch.empty(parent.numel(), dtype=torch.long)
        ids[:num_leaves] = leaf_base + torch.arange(num_leaves)
        ids[num_leaves:] = internal_base + torch.arange(parent.numel() - num_leaves)
        mapped.append((ids, parent))
        leaf_base += num_leaves
        internal_base += parent.numel() - num_leaves
    forest = torch.full((internal_base, ), -1, dtype=torch.long)
    for ids, parent in mapped:
        has = parent >= 0
        forest[ids[has]] = ids[parent[has]]
    h = Hierarchy.from_parent(forest, total_leaves)
    q = torch.cat([o[0] for o in outs])
    k = torch.cat([o[1] for o in outs])
    v = torch.cat([o[2] for o in outs])
    assert torch.allclose(hsa(q, k, v, h), torch.cat([o[3] for o in outs]), atol=1e-12)


def test_lonely_leaf_gets_zero_or_itself():
    parent = torch.tensor([-1, 3, 3, -1])   # leaf 0 alone; leaves 1, 2 under node 3
    h = Hierarchy.from_parent(parent, 3)
    q, k, v, _, _ = _inputs(h, 1, 2, 2, 0)
    out = hsa(q, k, v, h)
    assert torch.all(out[0] == 0)
    assert torch.allclose(out[1], v[2]) and torch.allclose(out[2], v[1])
    out = hsa(q, k, v, h, include_self=True)
    assert torch.allclose(out[0], v[0])


@pytest.mark.parametrize('include_self', [False, True])
@pytest.mark.parametrize('causal', [False, True])
def test_huge_scores_are_finite_and_exact(include_self, causal):
    parent, num_leaves = random_forest(11, 2, 3, 4)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, 2, 4, 3, 2, pos='shared', spread=100.0)  # scores ~1e4
    out = hsa(q, k, v, h, pos=p * 30, include_self=include_self, causal=causal)
    assert torch.isfinite(out).all()
    ref = hsa_dense(q, k, v, h, pos=p * 30, include_self=include_self, causal=causal)
    assert torch.allclose(out, ref, atol=1e-9)
    out32 = hsa(q.float(), k.float(), v.float(), h, pos=p.float() * 30,
                include_self=include_self, causal=causal)
    assert torch.isfinite(out32).all()


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_low_precision(dtype, atol):
    parent, num_leaves = random_forest(7, 2, 3, 5)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, 2, 8, 8, 0, pos='shared', bias='heads')
    ref = hsa_dense(q, k, v, h, pos=p, bias=b)
    out = hsa(q.to(dtype), k.to(dtype), v.to(dtype), h, pos=p.to(dtype), bias=b.to(dtype))
    assert out.dtype == dtype
    assert torch.allclose(out.double(), ref, atol=atol)


@pytest.mark.parametrize('include_self,causal', [(False, False), (True, False),
                                                 (False, True), (True, True)])
def test_gradcheck(include_self, causal):
    parent, num_leaves = random_forest(5, 2, 3, 3)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, 2, 3, 2, 3, pos='heads', bias='shared')
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]

    def fn(q, k, v, p, b):
        return hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)

    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize('name,parent,num_leaves', degenerate_forests(),
                         ids=[f[0] for f in degenerate_forests()])
@pytest.mark.parametrize('include_self,causal', [(False, False), (True, False),
                                                 (False, True), (True, True)])
def test_degenerate_forests_match_reference_with_gradcheck(name, parent, num_leaves,
                                                           include_self, causal):
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, 2, 3, 2, 7, pos='heads', bias='heads')
    out = hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
    ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
    assert torch.allclose(out, ref, atol=1e-12)
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]

    def fn(q, k, v, p, b):
        return hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)

    assert torch.autograd.gradcheck(fn, args)


def test_gradcheck_one_head_with_a_block_stored_in_order():
    # regression: with one head a block stored in order was already
    # contiguous, so the "private copy" was the buffer itself and the forward
    # pass overwrote its children's nu (found by the hypothesis gradcheck)
    parent, n = random_forest(198, 2, 3, 3)
    h = Hierarchy.from_parent(parent, n)
    assert any(c.child_start is not None and not c.leaves for c in h.layout.classes())
    q, k, v, p, b = _inputs(h, 1, 2, 2, 198, pos='shared', bias='shared')
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]
    assert torch.autograd.gradcheck(
        lambda q, k, v, p, b: hsa(q, k, v, h, pos=p, bias=b), args)


def test_lone_leaves_with_self_pass_values_and_their_gradient():
    # regression: every tree a lone leaf ran no backward step, so v.grad was 0
    for parent in ([-1], [-1, -1, -1]):
        h = Hierarchy.from_parent(torch.tensor(parent), len(parent))
        q = torch.randn(len(parent), 1, 4, dtype=torch.float64, requires_grad=True)
        v = torch.randn(len(parent), 1, 4, dtype=torch.float64, requires_grad=True)
        out = hsa(q, q, v, h, include_self=True)
        assert torch.equal(out, v)
        out.sum().backward()
        assert torch.equal(v.grad, torch.ones_like(v))
        assert torch.equal(q.grad, torch.zeros_like(q))


def test_gradients_finite_on_unary_chains_and_lone_leaves():
    parent = torch.tensor([4, 6, 6, -1, 5, 7, 7, -1])  # a unary chain, a lone leaf
    h = Hierarchy.from_parent(parent, 4)
    q, k, v, _, _ = _inputs(h, 2, 4, 4, 0)
    for include_self in (False, True):
        for causal in (False, True):
            args = [t.clone().float().requires_grad_() for t in (q, k, v)]
            hsa(*args, h, include_self=include_self, causal=causal).sum().backward()
            assert all(torch.isfinite(a.grad).all() for a in args)


def test_regular_tree_large_matches_reference_float32():
    parent, n = regular_tree(200, (4, 5))
    h = Hierarchy.from_parent(parent, n)
    q, k, v, p, b = _inputs(h, 2, 8, 8, 0, dtype=torch.float32)
    out = hsa(q, k, v, h)
    assert torch.allclose(out.double(), hsa_dense(q, k, v, h), atol=1e-5)


def test_input_validation_messages():
    h = Hierarchy.from_parent(*flat_tree(4))
    q = torch.randn(4, 2, 8)
    with pytest.raises(TypeError, match="'hierarchy' must be a compiled Hierarchy"):
        hsa(q, q, q, torch.tensor([4, 4, -1]))
    with pytest.raises(ValueError, match="'q' has 3 rows but the hierarchy has 4 leaves"):
        hsa(q[:3], q[:3], q[:3], h)
    with pytest.raises(ValueError, match=r"'q' must have shape \[num_leaves, heads"):
        hsa(q[:, 0], q[:, 0], q[:, 0], h)
    with pytest.raises(ValueError, match="'k' must have the shape of 'q'"):
        hsa(q, q[:, :, :4], q, h)
    with pytest.raises(ValueError, match="'v' must have shape"):
        hsa(q, q, q[:, :1], h)
    with pytest.raises(TypeError, match="must share a dtype"):
        hsa(q, q, q.double(), h)
    with pytest.raises(TypeError, match="floating-point"):
        hsa(q.long(), q.long(), q.long(), h)
    with pytest.raises(ValueError, match=r"'pos' must have shape \[num_nodes=5"):
        hsa(q, q, q, h, pos=torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"'bias' must have shape \[num_pairs=12\]"):
        hsa(q, q, q, h, bias=torch.randn(11))


@pytest.fixture
def tiny_chunks(monkeypatch):
    r"""Forces the engine to split buckets into many chunks and wide families
    into query-row blocks."""
    from hsa_geo.engine.schedule import Budget
    monkeypatch.setattr(Budget, 'CPU_ROWS', 64)
    monkeypatch.setattr(Budget, 'CPU_SCORES', 16)


def _padded_forest():
    sizes = [6, 1, 3, 2, 5, 5, 4, 7]
    parent, base = [], sum(sizes)
    for fam, size in enumerate(sizes):
        parent += [base + fam] * size
    parent += [base + len(sizes)] * 5 + [base + len(sizes) + 1] * 3
    parent += [-1, -1]
    return torch.tensor(parent), base


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('include_self,causal', [(False, False), (True, False),
                                                 (False, True), (True, True)])
def test_chunked_and_row_split_match_reference(tiny_chunks, seed, include_self, causal):
    parent, n = random_forest(seed, 2, 3, 6)
    for parent, n in ((parent, n), _padded_forest(), flat_tree(9)):
        h = Hierarchy.from_parent(parent, n)
        q, k, v, p, b = _inputs(h, 2, 3, 2, seed, pos='shared', bias='heads')
        out = hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
        ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self,
                        causal=causal)
        assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize('include_self,causal,pos,bias', [
    (False, False, 'shared', 'heads'), (True, True, 'heads', 'shared')])
def test_gradcheck_chunked_padded(tiny_chunks, include_self, causal, pos, bias):
    for parent, n in (_padded_forest(), flat_tree(7)):
        h = Hierarchy.from_parent(parent, n)
        q, k, v, p, b = _inputs(h, 2, 2, 2, 4, pos=pos, bias=bias)
        args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]

        def fn(q, k, v, p, b):
            return hsa(q, k, v, h, pos=p, bias=b, include_self=include_self,
                       causal=causal)

        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.slow
@given(seed=st.integers(0, 10**6), include_self=st.booleans(), causal=st.booleans())
@settings(max_examples=25)
def test_gradcheck_random_forests(seed, include_self, causal):
    parent, n = random_forest(seed, 2, 3, 3)
    h = Hierarchy.from_parent(parent, n)
    q, k, v, p, b = _inputs(h, 1, 2, 2, seed, pos='shared', bias='shared')
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]
    assert torch.autograd.gradcheck(
        lambda q, k, v, p, b: hsa(q, k, v, h, pos=p, bias=b, include_self=include_self,
                                  causal=causal), args)


@pytest.fixture
def fixed_dropout_masks(monkeypatch):
    r"""Makes every forward draw the same dropout masks, so that gradcheck
    can compare the hand-written backward with finite differences."""
    def rand_like(x):
        gen = torch.Generator().manual_seed(x.numel())
        return torch.rand(x.shape, generator=gen, dtype=x.dtype)

    import hsa_geo.engine.recorder as recorder
    from hsa_geo.engine import numba_kernels
    monkeypatch.setattr(recorder.torch, 'rand_like', rand_like)
    monkeypatch.setattr(numba_kernels, 'draw_seed', lambda: 12345)


@pytest.mark.slow
@pytest.mark.parametrize('include_self,causal', [(False, False), (True, True)])
def test_gradcheck_with_attention_dropout(fixed_dropout_masks, include_self, causal):
    parent, num_leaves = random_forest(8, 2, 3, 4)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, p, b = _inputs(h, 2, 3, 2, 1, pos='shared', bias='heads')
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]

    def fn(q, k, v, p, b):
        return hsa(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal,
                   dropout=0.3)

    assert torch.autograd.gradcheck(fn, args)
    assert not torch.allclose(fn(*args), hsa(*args[:3], h, pos=args[3], bias=args[4],
                                             include_self=include_self, causal=causal))


@pytest.mark.slow
def test_attention_dropout_is_unbiased():
    parent, num_leaves = random_forest(9, 1, 3, 5)
    h = Hierarchy.from_parent(parent, num_leaves)
    q, k, v, _, _ = _inputs(h, 2, 4, 3, 0)
    torch.manual_seed(0)
    runs = torch.stack([hsa(q, k, v, h, dropout=0.5) for _ in range(4000)])
    expected = hsa(q, k, v, h)
    stderr = runs.std(0) / math.sqrt(runs.size(0))
    assert ((runs.mean(0) - expected).abs() <= 5 * stderr + 1e-9).all()
    with pytest.raises(ValueError, match="'dropout' must be in"):
        hsa(q, k, v, h, dropout=1.0)


@pytest.fixture
def garbage_memory():
    r"""Every torch.empty comes back filled with NaN, so that a read of memory
    the engine never wrote shows as NaN instead of passing by luck."""
    import torch.utils.deterministic as det
    old_mode, old_fill = torch.are_deterministic_algorithms_enabled(), \
        det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    det.fill_uninitialized_memory = True
    yield
    det.fill_uninitialized_memory = old_fill
    torch.use_deterministic_algorithms(old_mode)


@pytest.mark.parametrize('include_self,causal', [(False, False), (True, False),
                                                 (False, True), (True, True)])
def test_engine_never_reads_memory_it_did_not_write(garbage_memory, include_self, causal):
    forests = [random_forest(s, 3, 3, 6) for s in range(4)] + \
        [(p, n) for _, p, n in degenerate_forests()] + [_padded_forest()]
    for parent, n in forests:
        h = Hierarchy.from_parent(parent, n)
        q, k, v, p, b = _inputs(h, 2, 3, 2, n, pos='heads', bias='heads')
        args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]
        out = hsa(*args[:3], h, pos=args[3], bias=args[4], include_self=include_self,
                  causal=causal)
        ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
        assert torch.allclose(out, ref, atol=1e-12)
        out.sum().backward()
        assert all(torch.isfinite(a.grad).all() for a in args)
