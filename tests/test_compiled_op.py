r"""The engine's custom operator (the path torch.compile takes) against the
dense reference and against eager mode, values and gradients, on random
ragged and degenerate forests; and its fallbacks."""
import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo import compiled as op
from hsa_geo.reference import hsa_dense
from hsa_geo.testing import degenerate_forests, random_forest

FORESTS = [(name, parent, n) for name, parent, n in degenerate_forests()] + \
    [(f'random_{s}', *random_forest(s, num_roots=3)) for s in range(4)]


def _inputs(h, seed, heads=2, dim=3):
    gen = torch.Generator().manual_seed(seed)
    leaves = [torch.randn(h.num_leaves, heads, dim, generator=gen, dtype=torch.float64)
              for _ in range(3)]
    pos = torch.randn(h.num_nodes, heads, 2, generator=gen, dtype=torch.float64)
    bias = torch.randn(h.num_pairs, heads, generator=gen, dtype=torch.float64)
    return [t.requires_grad_() for t in leaves + [pos, bias]]


@pytest.mark.parametrize('include_self,causal', [(False, False), (True, True)])
def test_compiled_operator_equals_reference_and_eager(include_self, causal):
    def attend(q, k, v, h, pos, bias):
        return hsa(q, k, v, h, pos=pos, bias=bias, include_self=include_self, causal=causal)

    torch._dynamo.reset()
    compiled = torch.compile(attend, backend='aot_eager', dynamic=True, fullgraph=True)
    before = dict(op.STATS)
    for seed, (name, parent, n) in enumerate(FORESTS):
        h = Hierarchy.from_parent(parent, n)
        q, k, v, pos, bias = _inputs(h, seed)
        out = compiled(q, k, v, h, pos, bias)
        expected = hsa_dense(q, k, v, h, pos=pos, bias=bias, include_self=include_self,
                             causal=causal)
        assert torch.allclose(out, expected, atol=1e-10), name
        grads = torch.autograd.grad(out.pow(2).sum(), (q, k, v, pos, bias))
        eager = attend(q, k, v, h, pos, bias)
        eager_grads = torch.autograd.grad(eager.pow(2).sum(), (q, k, v, pos, bias))
        for got, want, what in zip(grads, eager_grads, 'q k v pos bias'.split()):
            assert torch.allclose(got, want, atol=1e-10), (name, what)
    assert op.STATS == before


def test_operator_checks_sizes_at_run_time():
    h = Hierarchy.from_parent(*random_forest(1))
    q, k, v, pos, _ = _inputs(h, 0)
    compiled = torch.compile(lambda q, h, pos: hsa(q, q, q, h, pos=pos), backend='aot_eager',
                             dynamic=True, fullgraph=True)
    with pytest.raises(ValueError, match="'q' has .* rows but the hierarchy has"):
        compiled(q[:-1], h, pos)
    with pytest.raises(ValueError, match="'pos' must have shape"):
        compiled(q, h, pos[:-1])


def test_a_lost_tape_entry_is_recomputed_exactly():
    h = Hierarchy.from_parent(*random_forest(2, num_roots=2))
    q, k, v, pos, bias = _inputs(h, 3)
    out, token = op.attention(q, k, v, pos, bias, h.parent, 'parent', True, False, 0.5, 0.0)
    expected = torch.autograd.grad(out.sum(), (q, k, v, pos, bias), retain_graph=True)
    op._TAPE.pop(int(token[0]))
    before = op.STATS['tape_recomputed']
    again = torch.autograd.grad(out.sum(), (q, k, v, pos, bias))
    assert op.STATS['tape_recomputed'] == before + 1
    for a, b in zip(again, expected):
        assert torch.allclose(a, b, atol=1e-12)


def test_a_copied_parent_vector_is_compiled_again_with_a_warning():
    h = Hierarchy.from_parent(*random_forest(3))
    q, k, v, _, _ = _inputs(h, 4)
    with pytest.warns(UserWarning, match='compiles the hierarchy again'):
        out, _ = op.attention(q, k, v, None, None, h.parent.clone(), 'parent', False, False,
                              0.5, 0.0)
    assert torch.allclose(out, hsa(q, k, v, h, scale=0.5), atol=1e-12)


def test_flat_families_from_a_batch_vector_are_built_once_per_tensor():
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    first = op.flat_forest(batch, 9, batch.device)
    assert op.flat_forest(batch, 9, batch.device) is first
    assert torch.equal(first.parent, Hierarchy.from_batch(batch, 9).parent)
    assert op.flat_forest(batch.clone(), 9, batch.device) is not first


@pytest.mark.parametrize('compiled', [False, True])
def test_a_batch_vector_written_in_place_is_not_served_from_the_cache(compiled):
    # a reused batch buffer: the flat families must follow its new content
    from hsa_geo.nn import HSAGPSConv
    torch.manual_seed(0)
    conv = HSAGPSConv(8, None, heads=2, norm=None).double().eval()
    run = torch.compile(conv, backend='aot_eager', dynamic=True, fullgraph=True) \
        if compiled else conv
    x = torch.randn(6, 8, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    run(x, None, batch=batch)
    batch[3:] = 0
    out = run(x, None, batch=batch)
    expected = conv(x, None, batch=torch.zeros(6, dtype=torch.long))
    assert torch.allclose(out, expected, atol=1e-12)
    assert not torch.allclose(out, conv(x, None, batch=torch.tensor([0, 0, 0, 1, 1, 1])))
    # untouched, the tensor is still served from the cache
    first = op.flat_forest(batch, 6, batch.device)
    assert op.flat_forest(batch, 6, batch.device) is first


def _recompile_forests():
    r"""Forests whose sizes coincide with each other and with the layer's
    widths (4 leaves, 6 leaves, 2 nodes...) and forests without pairs."""
    return [Hierarchy.from_parent(*random_forest(s, num_roots=2)) for s in range(2)] + [
        Hierarchy.from_parent(torch.tensor(p), n) for p, n in [
            ([2, 2, -1], 2), ([-1, -1], 2), ([4, 4, 4, 4, -1], 4), ([3, 3, 3, -1], 3),
            ([6] * 6 + [-1], 6), ([4, 4, 5, 5, 6, 6, -1], 4), ([-1, -1, -1], 3)]]


def test_one_compiled_graph_serves_forests_of_any_size():
    from hsa_geo import HSAConv
    from hsa_geo.testing import CompileCounter
    torch._dynamo.reset()
    counter = CompileCounter()
    conv = HSAConv(4, 6, heads=2).eval()
    compiled = torch.compile(conv, backend=counter, dynamic=True, fullgraph=True)
    for h in _recompile_forests():
        x = torch.randn(h.num_leaves, 4)
        assert torch.allclose(compiled(x, h), conv(x, h), atol=1e-5)
    assert counter.count == 1
    # PyTorch specialises an input dimension of size 1 (a one-leaf batch)...
    single = Hierarchy.from_parent(torch.tensor([-1]), 1)
    compiled(torch.randn(1, 4), single)
    assert counter.count == 2
    # ... unless it is marked unbacked, as the README says
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(conv, backend=counter, dynamic=True, fullgraph=True)
    for h in _recompile_forests() + [single]:
        x = torch.randn(h.num_leaves, 4)
        torch._dynamo.decorators.mark_unbacked(x, 0)
        compiled(x, h)
    assert counter.count == 1


def test_the_operator_names_a_hierarchy_by_its_token():
    h = Hierarchy.from_parent(*random_forest(5))
    q, k, v, pos, bias = _inputs(h, 5)
    out, tape = op.attention(q, k, v, pos, bias, h.token, 'token', False, False, 0.5, 0.0)
    assert torch.allclose(out, hsa(q, k, v, h, pos=pos, bias=bias, scale=0.5), atol=1e-12)
    assert h.token.shape == (2, ) and Hierarchy.of_token(h.token.clone()) is h
    # a token of another process (a saved program loaded elsewhere) names nothing
    alien = h.token.clone()
    alien[0] += 1
    assert Hierarchy.of_token(alien) is None
    token = h.token.clone()
    del h, out, tape  # the tape entry holds the hierarchy until its backward
    import gc
    gc.collect()
    with pytest.raises(RuntimeError, match='no longer exists'):
        op.attention(q, k, v, pos, bias, token, 'token', False, False, 0.5, 0.0)
