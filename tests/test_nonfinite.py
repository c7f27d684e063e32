r"""A NaN (or infinity) in an input reaches exactly the outputs that depend
on it, as in the dense reference: never a row of another tree, a row that
gives the bad entry a structural weight of zero (the diagonal, a masked
sibling, padding, a subtree that keeps nothing), or a family that shares only
a padded block with it.

The oracle is :func:`hsa_geo.reference.nan_reach`: the reference's attention
matrix :math:`\hat\theta` computed with the bad entry (NaN arithmetic), read
only where :math:`\hat\theta` is not structurally zero: output ``(i, c)`` is
NaN exactly when some such weight :math:`\hat\theta_{ij}` is NaN or some such
:math:`v_j` has a NaN in channel ``c``."""
import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo import compiled as op
from hsa_geo.engine import Config, attention
from hsa_geo.reference import hsa_dense, nan_reach
from hsa_geo.testing import degenerate_forests, random_forest

# every test on both CPU paths of the engine (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('engine_path')

FORESTS = [(f'random_{s}', *random_forest(s, num_roots=3, max_depth=3, max_branching=5))
           for s in range(8)] + list(degenerate_forests())
OPTIONS = [dict(), dict(include_self=True), dict(causal=True),
           dict(include_self=True, causal=True)]
INPUTS = ['q', 'k', 'v', 'pos', 'bias']


def _inputs(h, seed, heads=2, dim=3):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa
    return dict(q=make(h.num_leaves, heads, dim), k=make(h.num_leaves, heads, dim),
                v=make(h.num_leaves, heads, dim), pos=make(h.num_nodes, heads, 2),
                bias=make(h.num_pairs, heads)), gen


def _expected_nan(inputs, h, options, name, index):
    r"""The outputs that depend on ``inputs[name][index]`` being NaN."""
    inputs[name][index] = float('nan')
    return nan_reach(inputs['q'], inputs['k'], inputs['v'], h, pos=inputs['pos'],
                     bias=inputs['bias'], **options)


@pytest.mark.parametrize('options', OPTIONS, ids=['plain', 'self', 'causal', 'self-causal'])
@pytest.mark.parametrize('name', INPUTS)
def test_a_nan_reaches_exactly_the_outputs_that_depend_on_it(name, options):
    checked = 0
    for seed, (forest, parent, n) in enumerate(FORESTS):
        h = Hierarchy.from_parent(parent, n)
        inputs, gen = _inputs(h, seed)
        tensor = inputs[name]
        if tensor.numel() == 0:
            continue
        for _ in range(2):
            index = tuple(int(torch.randint(s, (1, ), generator=gen)) for s in tensor.shape)
            expected = _expected_nan(inputs, h, options, name, index)
            out = hsa(inputs['q'], inputs['k'], inputs['v'], h, pos=inputs['pos'],
                      bias=inputs['bias'], **options)
            assert torch.equal(torch.isnan(out), expected), (forest, name, index)
            assert torch.isfinite(out[~expected]).all()
            tensor[index] = 0.5
            checked += 1
    assert checked >= 20


def test_a_nan_in_one_graph_of_a_batch_leaves_the_others_alone():
    # the common case: one bad sample in a batch of graphs, flat families
    # padded to one width (the padding of a class reads leaf 0)
    batch = torch.tensor([0] * 3 + [1] * 7 + [2] * 5)
    h = Hierarchy.from_batch(batch, batch.numel())
    for name in ('q', 'k', 'v'):
        q, k, v = (torch.randn(15, 2, 4) for _ in range(3))
        {'q': q, 'k': k, 'v': v}[name][0, 1, 2] = float('nan')
        for options in OPTIONS:
            out = hsa(q, k, v, h, **options)
            assert torch.isfinite(out[3:]).all(), (name, options)


def test_an_infinity_stays_in_the_rows_that_depend_on_it():
    parent, n = random_forest(3, num_roots=3, max_depth=3, max_branching=5)
    h = Hierarchy.from_parent(parent, n)
    inputs, _ = _inputs(h, 0)
    inputs['v'][0, 0, 0] = float('inf')
    out = hsa(inputs['q'], inputs['k'], inputs['v'], h)
    inputs['v'][0, 0, 0] = float('nan')
    expected = _expected_nan(inputs, h, {}, 'v', (0, 0, 0))
    assert torch.equal(~torch.isfinite(out), expected)


def test_the_compiled_operator_keeps_nans_where_they_belong():
    parent, n = random_forest(4, num_roots=3, max_depth=3, max_branching=5)
    h = Hierarchy.from_parent(parent, n)
    inputs, _ = _inputs(h, 1)
    inputs['k'][2, 1, 0] = float('nan')
    expected = _expected_nan(inputs, h, dict(causal=True), 'k', (2, 1, 0))
    out, _ = op.attention(inputs['q'], inputs['k'], inputs['v'], None, None, h.token,
                          'token', False, True, 3 ** -0.5, 0.0)
    inputs['pos'] = inputs['bias'] = None
    expected = _expected_nan(inputs, h, dict(causal=True), 'k', (2, 1, 0))
    assert torch.equal(torch.isnan(out), expected)


@pytest.mark.parametrize('options', OPTIONS, ids=['plain', 'self', 'causal', 'self-causal'])
def test_the_guarded_path_is_exact_on_finite_inputs(options):
    # on a GPU the guard is always on: on the CPU it runs only for non-finite
    # inputs, so here it is forced and checked against the reference
    for seed, (forest, parent, n) in enumerate(FORESTS):
        h = Hierarchy.from_parent(parent, n)
        inputs, _ = _inputs(h, seed)
        leaves = [inputs[t].requires_grad_() for t in INPUTS]
        cfg = Config(options.get('include_self', False), options.get('causal', False),
                     3 ** -0.5, 0.0, guard=True)
        out = attention(h.layout, cfg, *leaves)
        expected = hsa_dense(*leaves[:3], h, pos=leaves[3], bias=leaves[4], **options)
        assert torch.allclose(out, expected, atol=1e-12), forest
        # gradients: those of the unguarded path (gradchecked in test_functional)
        plain = attention(h.layout, Config(cfg.include_self, cfg.causal, cfg.scale, 0.0),
                          *leaves)
        if not plain.requires_grad:
            continue
        grads = torch.autograd.grad(out.sin().sum(), leaves, allow_unused=True)
        ref = torch.autograd.grad(plain.sin().sum(), leaves, allow_unused=True)
        for g, r, what in zip(grads, ref, INPUTS):
            assert (g is None) == (r is None), (forest, what)
            if r is not None:
                assert torch.allclose(g, r, atol=1e-12), (forest, what)


def test_the_guarded_path_passes_gradcheck():
    h = Hierarchy.from_parent(*random_forest(1, num_roots=2, max_depth=3, max_branching=4))
    inputs, _ = _inputs(h, 2, heads=1, dim=2)
    leaves = [inputs[t].requires_grad_() for t in INPUTS]
    cfg = Config(False, True, 0.7, 0.0, guard=True)
    assert torch.autograd.gradcheck(lambda *x: attention(h.layout, cfg, *x), leaves)
