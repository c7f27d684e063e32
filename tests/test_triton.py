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
    hsa(q, q, q, h, dropout=0.5)                           # dropout: PyTorch path
    assert interpreted['forward'] == 0
    hsa(q, q, q, h)
    assert interpreted['forward'] == 1


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
