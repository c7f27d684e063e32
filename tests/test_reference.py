
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hsa_geo import Hierarchy
from hsa_geo.reference import attention_matrix, block_pairs, flat_scores, flat_softmax, hsa_dense
from hsa_geo.testing import flat_tree, random_forest


def _setup(seed, num_roots=2, heads=2, pos=True, bias=True):
    parent, n = random_forest(seed, num_roots, 3, 4)
    h = Hierarchy.from_parent(parent, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, heads, 3, generator=gen, dtype=torch.float64)
    k = torch.randn(n, heads, 3, generator=gen, dtype=torch.float64)
    p = torch.randn(h.num_nodes, heads, 2, generator=gen, dtype=torch.float64) if pos else None
    b = torch.randn(h.num_pairs, generator=gen, dtype=torch.float64) if bias else None
    return h, q, k, p, b


def _has_target(h, causal, include_self):
    r"""Which leaves have anything to attend to."""
    allowed = flat_softmax(torch.zeros(1, h.num_leaves, h.num_leaves), h,
                           include_self, causal)[0]
    return allowed.sum(-1) > 0


@given(seed=st.integers(0, 10**6), include_self=st.booleans(), causal=st.booleans())
@settings(max_examples=60)
def test_rows_sum_to_one_and_blocks_are_constant(seed, include_self, causal):
    h, q, k, p, b = _setup(seed)
    theta = attention_matrix(q, k, h, p, b, include_self, causal)
    assert (theta >= 0).all()
    target = _has_target(h, causal, include_self)
    sums = theta.sum(-1)
    assert torch.allclose(sums[:, target], torch.ones_like(sums[:, target]), atol=1e-12)
    assert torch.all(sums[:, ~target] == 0)
    blocks = block_pairs(h)
    for a, bb in set(zip(blocks[0].flatten().tolist(), blocks[1].flatten().tolist())):
        if a < 0 or a == bb:
            continue
        sel = (blocks[0] == a) & (blocks[1] == bb)
        vals = theta[:, sel]
        assert torch.allclose(vals, vals[:, :1].expand_as(vals), atol=1e-14)


def test_flat_tree_reference_is_softmax():
    h = Hierarchy.from_parent(*flat_tree(6))
    q = torch.randn(6, 2, 4, dtype=torch.float64)
    k = torch.randn(6, 2, 4, dtype=torch.float64)
    for include_self in (False, True):
        theta = attention_matrix(q, k, h, include_self=include_self)
        flat = flat_softmax(flat_scores(q, k, h), h, include_self)
        assert torch.allclose(theta, flat, atol=1e-14)


def _kl_problem(h, theta, flat, include_self):
    r"""Block variables, the row-sum constraint matrix and the total KL."""
    blocks = block_pairs(h)
    n = h.num_leaves
    key = {}
    var = torch.full((n, n), -1, dtype=torch.long)
    for i in range(n):
        for j in range(n):
            a, b = int(blocks[0, i, j]), int(blocks[1, i, j])
            if a < 0 or (i == j and not include_self) or flat[i, j] == 0:
                continue
            var[i, j] = key.setdefault((a, b), len(key))
    rows = [i for i in range(n) if (var[i] >= 0).any()]
    constraint = torch.zeros(len(rows), len(key), dtype=torch.float64)
    for r, i in enumerate(rows):
        for j in range(n):
            if var[i, j] >= 0:
                constraint[r, var[i, j]] += 1
    value = torch.zeros(len(key), dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if var[i, j] >= 0:
                value[var[i, j]] = theta[i, j]
    mask = var >= 0
    idx = var.clamp(min=0)

    def total_kl(c):
        t = c[idx]
        return torch.where(mask, t * (t.log() - flat.clamp_min(1e-300).log()), 0).sum()

    return value, constraint, total_kl


@pytest.mark.parametrize('seed', range(8))
@pytest.mark.parametrize('include_self', [False, True])
def test_kl_optimality(seed, include_self):
    r"""Theorem 3.2: theta_hat minimises the total KL to the flat softmax over
    block-constant row-stochastic matrices.  The objective is convex, so the
    KKT condition (zero gradient along every feasible direction) proves global
    optimality; random feasible perturbations must not lower it either."""
    h, q, k, p, b = _setup(seed)
    thetas = attention_matrix(q, k, h, p, b, include_self)
    flats = flat_softmax(flat_scores(q, k, h, p, b), h, include_self)
    gen = torch.Generator().manual_seed(seed)
    for head in range(q.size(1)):
        c, constraint, total_kl = _kl_problem(h, thetas[head], flats[head], include_self)
        if c.numel() == 0:
            continue
        # the null space of the row-sum constraints = feasible directions
        _, s, vh = torch.linalg.svd(constraint, full_matrices=True)
        rank = int((s > 1e-10).sum())
        null = vh[rank:].t()
        c = c.clone().requires_grad_()
        f0 = total_kl(c)
        (grad, ) = torch.autograd.grad(f0, c)
        if null.numel():
            assert (null.t() @ grad).abs().max() < 1e-9
        for _ in range(20):
            if not null.numel():
                break
            direction = null @ torch.randn(null.size(1), generator=gen, dtype=torch.float64)
            step = 0.5 * float(c.detach().min()) / float(direction.abs().max())
            for t in (step, -step, step / 100):
                assert total_kl((c + t * direction).detach()) >= f0.detach() - 1e-12


def test_dense_output_is_theta_times_v():
    h, q, k, p, b = _setup(3)
    v = torch.randn(h.num_leaves, 2, 5, dtype=torch.float64)
    out = hsa_dense(q, k, v, h, p, b)
    theta = attention_matrix(q, k, h, p, b)
    assert torch.allclose(out, torch.einsum('hij,jhd->ihd', theta, v))
