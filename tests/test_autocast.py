r"""Mixed precision, the default training recipe: HSA under
:func:`torch.autocast` (bfloat16 and float16) computes in float32 inside,
returns the autocast dtype as ``scaled_dot_product_attention`` does, and its
values and gradients match float32 within the half type's round-off."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

from hsa_geo import Hierarchy, HSAConv, hsa
from hsa_geo.nn import HSAGPSConv, HSAGraphTransformer
from hsa_geo.testing import random_forest

HALF = [torch.bfloat16, torch.float16]
# relative tolerances of the half types after a few layers of round-off
TOL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


def _close(a, b, dtype, scale=None):
    r"""``a`` within the half type's tolerance of ``b``, relative to ``b``'s
    largest entry (or to :obj:`scale`)."""
    a, b = a.detach().float(), b.detach().float()
    scale = b.abs().max().clamp(min=1e-6) if scale is None else scale
    return float((a - b).abs().max() / scale) < TOL[dtype]


def _forest(seed=0):
    return Hierarchy.from_parent(*random_forest(seed, num_roots=3, max_depth=3,
                                                max_branching=5))


@pytest.mark.parametrize('dtype', HALF)
@pytest.mark.parametrize('options', [dict(), dict(include_self=True, causal=True)])
def test_hsa_under_autocast_returns_the_autocast_dtype(dtype, options):
    h = _forest()
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(h.num_leaves, 2, 8, generator=gen, requires_grad=True)
               for _ in range(3))
    pos = torch.randn(h.num_nodes, 4, generator=gen, requires_grad=True)
    with torch.autocast('cpu', dtype=dtype):
        out = hsa(q, k, v, h, pos=pos, **options)
        sdpa = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1),
                                              v.transpose(0, 1))
    assert out.dtype == sdpa.dtype == dtype
    ref = hsa(q, k, v, h, pos=pos, **options)
    assert _close(out, ref, dtype)
    grads = torch.autograd.grad(out.float().pow(2).sum(), (q, k, v, pos))
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), (q, k, v, pos))
    for g, r in zip(grads, ref_grads):
        assert g.dtype == torch.float32 and _close(g, r, dtype)
    # half-precision inputs (outside autocast) give their own dtype back
    half = hsa(q.detach().to(dtype), k.detach().to(dtype), v.detach().to(dtype), h,
               **options)
    assert half.dtype == dtype


def _step(model, run, dtype):
    r"""One forward and backward pass in ``dtype`` under autocast (or in
    float32): the output and the parameters' gradients."""
    model.zero_grad()
    with torch.autocast('cpu', dtype=dtype, enabled=dtype is not None):
        out = run(model)
    out.float().pow(2).mean().backward()
    return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize('dtype', HALF)
@pytest.mark.parametrize('layer', ['conv', 'gps', 'model'])
def test_layers_and_a_training_step_under_autocast_match_float32(dtype, layer):
    torch.manual_seed(0)
    h = _forest(1)
    n = h.num_leaves
    x = torch.randn(n, 16)
    edge_index = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    batch = h.leaf_tree
    if layer == 'conv':
        model = HSAConv(16, 8, heads=2, pos_channels=4)
        pos = torch.randn(h.num_nodes, 4)
        run = lambda m: m(x, h, pos=pos)                       # noqa: E731
    elif layer == 'gps':
        model = HSAGPSConv(16, GCNConv(16, 16), heads=2, norm='layer_norm').eval()
        run = lambda m: m(x, edge_index, batch=batch)          # noqa: E731
    else:
        model = HSAGraphTransformer(16, 16, 3, num_layers=2, heads=2, norm='layer_norm')
        run = lambda m: m(x, edge_index, h)                    # noqa: E731
    ref, ref_grads = _step(model, run, None)
    out, grads = _step(model, run, dtype)
    # a layer ending in LayerNorm returns float32 (autocast runs LayerNorm in
    # float32), one ending in Linear the half type
    assert out.dtype == (torch.float32 if layer == 'gps' else dtype)
    assert _close(out, ref, dtype)
    assert len(grads) == len(ref_grads)
    # relative to the largest gradient: some are round-off of zero (the query
    # bias under LayerNorm)
    scale = max(float(r.abs().max()) for r in ref_grads)
    for g, r in zip(grads, ref_grads):
        assert torch.isfinite(g).all() and _close(g, r, dtype, scale)
    if layer == 'model':  # and the optimiser step that follows works as usual
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        opt.step()
