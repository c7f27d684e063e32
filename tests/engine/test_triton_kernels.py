r"""The Triton kernels (the CUDA fast path) on the CPU through Triton's
interpreter, against the dense reference and the PyTorch path: values and
gradients on random ragged and degenerate forests."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip('triton')

from hsa_geo import Hierarchy, hsa  # noqa: E402
from hsa_geo.engine import triton_kernels  # noqa: E402
from hsa_geo.reference import hsa_dense  # noqa: E402
from hsa_geo.testing import degenerate_forests, flat_tree, random_forest  # noqa: E402

FLAGS = [(False, False), (True, False), (False, True), (True, True)]


def _on_cpu(monkeypatch):
    if not triton_kernels.interpreted():
        pytest.skip('triton was imported before TRITON_INTERPRET=1 was set')
    monkeypatch.setenv('HSA_GEO_TRITON_ON_CPU', '1')
    # on the CPU the fused numba kernels would take the call first
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '0')


@pytest.fixture
def interpreted(monkeypatch):
    r"""Runs the kernels in Triton's interpreter and counts the classes they
    take, so a test fails if the fused path is silently skipped."""
    _on_cpu(monkeypatch)
    calls = {'forward': 0, 'backward': 0}
    forward, backward = triton_kernels.forward_class, triton_kernels.backward_class

    def counted_forward(*args, **kwargs):
        calls['forward'] += 1
        return forward(*args, **kwargs)

    def counted_backward(*args, **kwargs):
        calls['backward'] += 1
        return backward(*args, **kwargs)

    monkeypatch.setattr(triton_kernels, 'forward_class', counted_forward)
    monkeypatch.setattr(triton_kernels, 'backward_class', counted_backward)
    return calls


def _inputs(h, seed, heads=2, dim=8, dim_v=4, pos='heads', bias='shared'):
    gen = torch.Generator().manual_seed(seed)
    n = h.num_leaves
    q, k = (torch.randn(n, heads, dim, generator=gen) for _ in range(2))
    v = torch.randn(n, heads, dim_v, generator=gen)
    p = None if pos is None else (
        torch.randn(h.num_nodes, 3, generator=gen) * 0.5 if pos == 'shared'
        else torch.randn(h.num_nodes, heads, 3, generator=gen) * 0.5)
    b = None if bias is None else (
        torch.randn(h.num_pairs, generator=gen) if bias == 'shared'
        else torch.randn(h.num_pairs, heads, generator=gen))
    return q, k, v, p, b


def _check(h, inputs, include_self, causal, calls):
    q, k, v, p, b = inputs
    present = [t for t in inputs if t is not None]
    args = [t.clone().requires_grad_() for t in present]
    it = iter(args)
    fused = [next(it) if t is not None else None for t in inputs]
    out = hsa(*fused[:3], h, pos=fused[3], bias=fused[4], include_self=include_self,
              causal=causal)
    ref = hsa_dense(q, k, v, h, pos=p, bias=b, include_self=include_self, causal=causal)
    assert torch.allclose(out.double(), ref, atol=2e-5), (out.double() - ref).abs().max()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    # the PyTorch path in float64 is exact (tested against the reference)
    exact = [t.double().clone().requires_grad_() for t in present]
    it = iter(exact)
    plain = [next(it) if t is not None else None for t in inputs]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('HSA_GEO_TRITON_ON_CPU', '0')
        ref_out = hsa(*plain[:3], h, pos=plain[3], bias=plain[4], include_self=include_self,
                      causal=causal)
        (ref_out * weights.double()).sum().backward()
    for mine, theirs in zip(args, exact):
        if theirs.numel() == 0:
            continue
        scale = 1 + theirs.grad.abs().max()
        assert torch.allclose(mine.grad.double(), theirs.grad, atol=2e-5 * scale), \
            (mine.grad.double() - theirs.grad).abs().max()
    if h.num_levels:
        assert calls['forward'] > 0 and calls['backward'] > 0


@pytest.mark.parametrize('include_self,causal', FLAGS)
@pytest.mark.parametrize('name,parent,num_leaves', degenerate_forests(),
                         ids=[f[0] for f in degenerate_forests()])
def test_kernels_on_degenerate_forests(interpreted, name, parent, num_leaves, include_self,
                                       causal):
    h = Hierarchy.from_parent(parent, num_leaves)
    _check(h, _inputs(h, 1), include_self, causal, interpreted)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6), flags=st.sampled_from(FLAGS),
       pos=st.sampled_from([None, 'shared', 'heads']),
       bias=st.sampled_from([None, 'shared', 'heads']), guard=st.booleans())
@pytest.mark.slow
def test_kernels_on_random_forests(seed, flags, pos, bias, guard):
    with pytest.MonkeyPatch.context() as mp:
        _on_cpu(mp)
        if guard:  # the non-finite guard, always on for GPU inputs, on finite ones
            from hsa_geo import engine
            mp.setattr(engine, 'needs_guard', lambda *tensors: True)
        calls = {'forward': 1, 'backward': 1}
        parent, n = random_forest(seed, 3, 3, 6)
        h = Hierarchy.from_parent(parent, n)
        _check(h, _inputs(h, seed, pos=pos, bias=bias), *flags, calls)


def test_wide_families_fall_back_to_the_pytorch_path(interpreted):
    # a family wider than MAX_WIDTH beside narrow ones: one call, both paths
    wide = triton_kernels.MAX_WIDTH + 6
    parent = torch.cat([torch.full((wide, ), wide + 4), torch.tensor([wide + 5] * 4),
                        torch.tensor([wide + 6, wide + 6, -1])])
    h = Hierarchy.from_parent(parent, wide + 4)
    assert max(c.width for c in h.layout.classes()) > triton_kernels.MAX_WIDTH
    _check(h, _inputs(h, 3), True, False, interpreted)


def test_kernels_not_used_where_they_cannot_be(interpreted):
    h = Hierarchy.from_parent(*flat_tree(6))
    q = torch.randn(6, 2, 4)
    hsa(q.double(), q.double(), q.double(), h)            # float64: PyTorch path
    assert interpreted['forward'] == 0
    hsa(q, q, q, h)
    hsa(q, q, q, h, dropout=0.5)                           # dropout: in the kernels
    assert interpreted['forward'] == 2


def _dropout_forest():
    h = Hierarchy.from_parent(*random_forest(9, 1, 3, 5))
    return h, _inputs(h, 4, pos='heads', bias='heads')


def test_kernel_dropout_follows_torch_seed_and_differs_across_seeds(interpreted):
    h, (q, k, v, p, b) = _dropout_forest()
    torch.manual_seed(5)
    first = hsa(q, k, v, h, pos=p, bias=b, dropout=0.3)
    torch.manual_seed(5)
    again = hsa(q, k, v, h, pos=p, bias=b, dropout=0.3)
    other = hsa(q, k, v, h, pos=p, bias=b, dropout=0.3)
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert interpreted['forward'] > 0


@pytest.mark.slow
def test_kernel_dropout_keeps_the_expected_share(interpreted):
    # a flat family of two leaves: each leaf's output is its sibling's value
    # kept (scaled by 1 / (1 - p)) or dropped, per head
    h = Hierarchy.from_parent(*flat_tree(2))
    ones = torch.ones(2, 128, 1)
    outs = torch.stack([hsa(ones, ones, ones, h, dropout=0.4) for _ in range(20)])
    assert abs(float((outs != 0).float().mean()) - 0.6) < 0.03
    assert torch.allclose(outs[outs != 0], torch.tensor(1 / 0.6))
    assert interpreted['forward'] == 20


def test_kernel_dropout_backward_redraws_the_forward_mask(interpreted, monkeypatch):
    # one seed for every call: the directional derivative of the output by
    # central differences equals the one the backward kernel gives
    from hsa_geo.engine import recorder
    monkeypatch.setattr(recorder.Recorder, 'seed', lambda self: 1234)
    h, inputs = _dropout_forest()
    gen = torch.Generator().manual_seed(1)
    for include_self, causal in FLAGS:
        args = [t.clone().requires_grad_() for t in inputs]
        weights = torch.randn(h.num_leaves, 2, 4, generator=gen)

        def loss(*x):
            return (hsa(*x[:3], h, pos=x[3], bias=x[4], include_self=include_self,
                        causal=causal, dropout=0.4) * weights).sum()

        loss(*args).backward()
        direction = [torch.randn(t.shape, generator=gen) for t in args]
        eps = 1e-2
        with torch.no_grad():
            plus = loss(*[t + eps * d for t, d in zip(args, direction)])
            minus = loss(*[t - eps * d for t, d in zip(args, direction)])
        numeric = float(plus - minus) / (2 * eps)
        analytic = sum(float((t.grad * d).sum()) for t, d in zip(args, direction))
        assert abs(numeric - analytic) <= 2e-2 * (1 + abs(analytic)), \
            (include_self, causal, numeric, analytic)
    assert interpreted['backward'] > 0


@pytest.mark.slow
def test_kernels_never_read_memory_they_did_not_write(interpreted):
    import torch.utils.deterministic as det
    old_mode, old_fill = torch.are_deterministic_algorithms_enabled(), \
        det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = True   # torch.empty gives NaN
    try:
        for seed in range(3):
            parent, n = random_forest(seed, 3, 3, 6)
            h = Hierarchy.from_parent(parent, n)
            for include_self, causal in FLAGS:
                _check(h, _inputs(h, seed, bias='heads'), include_self, causal, interpreted)
    finally:
        det.fill_uninitialized_memory = old_fill
        torch.use_deterministic_algorithms(old_mode)


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')
def test_kernels_keep_nans_where_they_belong(interpreted):
    # the guard (always on for GPU inputs): a NaN reaches exactly the outputs
    # that depend on it, as in the PyTorch path (tests/test_nonfinite.py)
    from hsa_geo.reference import nan_reach
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for seed in range(3):
        h = Hierarchy.from_parent(*random_forest(seed, num_roots=3, max_depth=3,
                                                 max_branching=5))
        for name in ('q', 'k', 'v', 'pos'):
            for causal in (False, True):
                q, k, v, pos, _ = _inputs(h, seed, heads=2, dim=4, dim_v=4)
                t = {'q': q, 'k': k, 'v': v, 'pos': pos}[name]
                index = tuple(int(torch.randint(s, (1, ), generator=gen)) for s in t.shape)
                t[index] = float('nan')
                out = hsa(q, k, v, h, pos=pos, causal=causal)
                expected = nan_reach(q.double(), k.double(), v.double(), h,
                                     pos=pos.double(), causal=causal)
                assert torch.equal(torch.isnan(out), expected), (seed, name, causal)
                checked += 1
    assert checked == 24 and interpreted['forward'] > 0
