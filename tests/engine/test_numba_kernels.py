r"""The fused CPU kernels (numba) against the dense reference and the PyTorch
path: values and gradients of q, k, v, pos and bias on random ragged and
degenerate forests, in float64, float32 and under bfloat16 autocast; dropout
by its statistics; when the kernels are used and when they are not."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip('numba')

from hsa_geo import Hierarchy, hsa  # noqa: E402
from hsa_geo.engine import numba_kernels  # noqa: E402
from hsa_geo.engine.families import families_of  # noqa: E402
from hsa_geo.reference import hsa_dense  # noqa: E402
from hsa_geo.testing import degenerate_forests, flat_tree, random_forest  # noqa: E402
from hsa_geo.weights import hsa_weights  # noqa: E402

FLAGS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.fixture
def counted(monkeypatch):
    r"""Counts the calls the kernels take, so that a test fails if the fused
    path is silently skipped."""
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1')
    calls = {'forward': 0, 'backward': 0}
    forward, backward = numba_kernels.forward, numba_kernels.backward

    def counted_forward(*args, **kwargs):
        calls['forward'] += 1
        return forward(*args, **kwargs)

    def counted_backward(*args, **kwargs):
        calls['backward'] += 1
        return backward(*args, **kwargs)

    monkeypatch.setattr(numba_kernels, 'forward', counted_forward)
    monkeypatch.setattr(numba_kernels, 'backward', counted_backward)
    return calls


def _inputs(h, seed, dtype, heads=2, dim=5, dim_v=3, pos='heads', bias='shared'):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    n = h.num_leaves
    p = None if pos is None else (make(h.num_nodes, 3) * 0.5 if pos == 'shared'
                                  else make(h.num_nodes, heads, 3) * 0.5)
    b = None if bias is None else (make(h.num_pairs) if bias == 'shared'
                                   else make(h.num_pairs, heads))
    return [make(n, heads, dim), make(n, heads, dim), make(n, heads, dim_v), p, b]


def _run(h, inputs, options, weights):
    args = [None if t is None else t.clone().requires_grad_() for t in inputs]
    out = hsa(*args[:3], h, pos=args[3], bias=args[4], **options)
    if out.requires_grad:
        (out * weights.to(out.dtype)).sum().backward()
    return out, [None if a is None or a.grad is None else a.grad for a in args]


def _check(h, inputs, options, calls, atol):
    r"""Kernels against the reference (values) and the float64 PyTorch path
    (gradients, which is exact: gradchecked in test_functional)."""
    q, k, v, p, b = inputs
    ref = hsa_dense(*(None if t is None else t.double() for t in (q, k, v)), h,
                    pos=None if p is None else p.double(),
                    bias=None if b is None else b.double(), **options)
    weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    before = dict(calls)
    out, grads = _run(h, inputs, options, weights)
    assert calls['forward'] == before['forward'] + 1
    assert torch.allclose(out.double(), ref, atol=atol), (out.double() - ref).abs().max()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('HSA_GEO_CPU_KERNELS', '0')
        exact = [None if t is None else t.double() for t in inputs]
        _, expected = _run(h, exact, options, weights)
    for mine, theirs in zip(grads, expected):
        assert (mine is None) == (theirs is None)
        if theirs is not None and theirs.numel():
            scale = 1 + theirs.abs().max()
            assert torch.allclose(mine.double(), theirs, atol=atol * scale), \
                (mine.double() - theirs).abs().max()


@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-11), (torch.float32, 2e-5)])
@pytest.mark.parametrize('include_self,causal', FLAGS)
@pytest.mark.parametrize('name,parent,num_leaves', degenerate_forests(),
                         ids=[f[0] for f in degenerate_forests()])
def test_kernels_on_degenerate_forests(counted, name, parent, num_leaves, include_self,
                                       causal, dtype, atol):
    h = Hierarchy.from_parent(parent, num_leaves)
    _check(h, _inputs(h, 1, dtype), dict(include_self=include_self, causal=causal),
           counted, atol)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), flags=st.sampled_from(FLAGS),
       pos=st.sampled_from([None, 'shared', 'heads']),
       bias=st.sampled_from([None, 'shared', 'heads']),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       heads=st.integers(1, 3), wide=st.booleans())
def test_kernels_on_random_forests(counted, seed, flags, pos, bias, dtype, heads, wide):
    # wide: families past the width (16) where scores are vectorised over siblings
    parent, n = random_forest(seed, 2, 2, 24) if wide else random_forest(seed, 3, 3, 6)
    h = Hierarchy.from_parent(parent, n)
    atol = 1e-11 if dtype == torch.float64 else 3e-5
    _check(h, _inputs(h, seed, dtype, heads=heads, pos=pos, bias=bias),
           dict(include_self=flags[0], causal=flags[1]), counted, atol)


def test_kernels_under_bfloat16_autocast(counted):
    # half precision is computed in float32 inside: on the kernels
    parent, n = random_forest(3, 2, 3, 5)
    h = Hierarchy.from_parent(parent, n)
    q, k, v, p, b = _inputs(h, 3, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = hsa(q.bfloat16(), k.bfloat16(), v.bfloat16(), h, pos=p, bias=b)
    assert out.dtype == torch.bfloat16 and counted['forward'] == 1
    ref = hsa_dense(q.bfloat16().double(), k.bfloat16().double(), v.bfloat16().double(), h,
                    pos=p.double(), bias=b.double())
    assert torch.allclose(out.double(), ref, atol=2e-2)


def test_the_families_are_the_layouts_pairs_and_rows():
    # pair numbering of the kernels = Hierarchy.sibling_index's order
    for seed in range(6):
        parent, n = random_forest(seed, 3, 4, 7)
        h = Hierarchy.from_parent(parent, n)
        fam = families_of(h.layout)
        pairs = []
        for f in range(fam.num_families):
            nodes = fam.node[fam.child_ptr[f]:fam.child_ptr[f + 1]].tolist()
            start = len(pairs)
            assert int(fam.pair_ptr[f]) == start
            pairs += [(a, b) for a in nodes for b in nodes if a != b]
        assert torch.equal(torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1),
                           h.sibling_index)
        assert fam.num_pairs == h.num_pairs
        # the weights n(C) / n(P) of every family sum to one
        family = torch.repeat_interleave(torch.arange(fam.num_families), fam.child_ptr.diff())
        totals = fam.weight.new_zeros(fam.num_families).index_add_(0, family, fam.weight)
        assert torch.allclose(totals, torch.ones_like(totals))


def _dropout_inputs():
    parent, n = random_forest(9, 1, 3, 5)
    h = Hierarchy.from_parent(parent, n)
    q, k, v, _, _ = _inputs(h, 0, torch.float64, heads=2, dim=4)
    return h, q, k, v


def test_dropout_masks_follow_torch_seed_and_differ_across_seeds(counted):
    h, q, k, v = _dropout_inputs()
    torch.manual_seed(3)
    first = hsa(q, k, v, h, dropout=0.3)
    torch.manual_seed(3)
    again = hsa(q, k, v, h, dropout=0.3)
    other = hsa(q, k, v, h, dropout=0.3)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert counted['forward'] == 3


@pytest.mark.slow
def test_dropout_is_unbiased_and_drops_the_expected_share(counted):
    h, q, k, v = _dropout_inputs()
    torch.manual_seed(0)
    runs = torch.stack([hsa(q, k, v, h, dropout=0.4) for _ in range(3000)])
    expected = hsa(q, k, v, h)
    stderr = runs.std(0) / runs.size(0) ** 0.5
    assert ((runs.mean(0) - expected).abs() <= 5 * stderr + 1e-9).all()
    # a flat family of two leaves: each leaf's output is its sibling's value
    # kept (scaled by 1 / (1 - p)) or dropped, per head
    h2 = Hierarchy.from_parent(*flat_tree(2))
    ones = torch.ones(2, 64, 1, dtype=torch.float64)
    outs = torch.stack([hsa(ones, ones, ones, h2, dropout=0.4) for _ in range(200)])
    kept = (outs != 0).double().mean()
    assert abs(float(kept) - 0.6) < 0.02
    assert torch.allclose(outs[outs != 0], torch.tensor(1 / 0.6, dtype=torch.float64))


@pytest.mark.slow
def test_dropout_backward_redraws_the_forward_mask(counted, monkeypatch):
    # the same seed for every forward call: gradcheck's finite differences
    # then see the mask the backward pass redraws
    monkeypatch.setattr(numba_kernels, 'draw_seed', lambda: 77)
    h, q, k, v = _dropout_inputs()
    p = torch.randn(h.num_nodes, 2, dtype=torch.float64)
    b = torch.randn(h.num_pairs, 2, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (q, k, v, p, b)]
    for flags in ((False, False), (True, True)):
        assert torch.autograd.gradcheck(
            lambda *x: hsa(*x[:3], h, pos=x[3], bias=x[4], include_self=flags[0],
                           causal=flags[1], dropout=0.3), args)


def test_where_the_kernels_are_not_used(counted, monkeypatch):
    # families wider than MAX_WIDTH, hsa_weights (pair weights), the switch
    h = Hierarchy.from_parent(*flat_tree(numba_kernels.MAX_WIDTH + 1))
    q = torch.randn(h.num_leaves, 1, 2)
    hsa(q, q, q, h)
    small = Hierarchy.from_parent(*random_forest(2, 2, 3, 4))
    q = torch.randn(small.num_leaves, 1, 2)
    hsa_weights(q, q, small)
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '0')
    hsa(q, q, q, small)
    assert counted['forward'] == 0
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1')
    monkeypatch.setattr(numba_kernels, 'available', lambda: False)
    expected = hsa(q, q, q, small)
    monkeypatch.undo()
    assert counted['forward'] == 0
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1')
    assert torch.allclose(hsa(q, q, q, small), expected, atol=1e-6)


def test_a_kernel_cache_older_than_the_helpers_it_inlines_is_dropped(tmp_path):
    # numba keys a kernel's disk cache on the kernel's own file only; the
    # helpers it inlines live in _numba_common.py
    import os

    from hsa_geo.engine.numba_kernels import _drop_stale_cache

    class Cache:
        flushed = 0

        def __init__(self, index):
            self._cache_file = type('File', (), {'_index_path': str(index)})()

        def flush(self):
            Cache.flushed += 1

    index, helpers = tmp_path / 'kernel.nbi', tmp_path / 'helpers.py'
    index.write_text('')
    helpers.write_text('')
    kernel = type('Kernel', (), {})()
    kernel._cache = Cache(index)
    os.utime(index, (1_000, 1_000))
    os.utime(helpers, (2_000, 2_000))          # helpers edited after the cache
    _drop_stale_cache(kernel, str(helpers))
    assert Cache.flushed == 1
    os.utime(index, (3_000, 3_000))            # a cache written since: kept
    _drop_stale_cache(kernel, str(helpers))
    assert Cache.flushed == 1
    _drop_stale_cache(object(), str(helpers))  # no cache to read: nothing happens


def test_the_kernels_leave_torch_thread_count_alone():
    # numba's OpenMP layer, launched on first use, resets the OpenMP thread
    # count torch shares; run in a fresh process so the layer is not up yet
    import subprocess
    import sys
    code = ("import torch\n"
            "torch.set_num_threads(1)\n"
            "from hsa_geo import Hierarchy, hsa\n"
            "h = Hierarchy.from_parent(torch.tensor([2, 2, -1]), 2)\n"
            "q = torch.randn(2, 1, 4)\n"
            "hsa(q, q, q, h)\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == '1'
