r"""One prepared check for a machine with a GPU, budgeted to finish in a few
minutes on an H200: both engine paths on CUDA against the dense reference,
then the workload table and the N-scaling table for the README.

0. **The newest kernels first**: attention dropout drawn inside the Triton
   kernels (the kept share and value, masks following torch's seed, the
   backward redrawing the forward's mask: a directional derivative by central
   differences against the backward's), and bfloat16 autocast on the fused
   path against the reference.
1. **Exactness.**  The PyTorch path in float64 and the Triton kernels
   (float32) on random ragged and degenerate forests, every ``include_self`` /
   ``causal`` combination, with positions and biases, against
   :func:`hsa_geo.reference.hsa_dense`; the Triton gradients against the
   float64 PyTorch path; ``torch.autograd.gradcheck`` of the PyTorch path.
2. **Workloads** (``benchmarks/_workloads.py``): the molecule, point-cloud and
   news batches; HSA forward and forward+backward on the PyTorch path
   (``HSA_GEO_TRITON=0``) and on the Triton path, against SDPA over the padded
   batch (its memory-efficient kernel: the flash kernel takes no padding mask).
3. **N-scaling**: regular trees of branching 16, HSA on both paths against
   SDPA over all N leaves with the flash backend.

Example::

    python benchmarks/cuda_check.py                 # needs a CUDA device
    python benchmarks/cuda_check.py --dry-run       # every step, tiny, on the CPU
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys

import torch

from _workloads import (
    attention_batch,
    dense_step,
    hsa_step,
    molecule_batch,
    news_batch,
    point_batch,
    rounds,
)

FLAGS = [(False, False), (True, False), (False, True), (True, True)]


@contextlib.contextmanager
def engine_path(triton: bool):
    r"""Runs the block on the Triton kernels or on the PyTorch path."""
    old = os.environ.get('HSA_GEO_TRITON')
    os.environ['HSA_GEO_TRITON'] = '1' if triton else '0'
    try:
        yield
    finally:
        if old is None:
            os.environ.pop('HSA_GEO_TRITON')
        else:
            os.environ['HSA_GEO_TRITON'] = old


def new_kernels(device, triton: bool) -> None:
    r"""Step 0 of the module docstring, on the Triton path when there is one
    (else on the device's default path)."""
    from hsa_geo import Hierarchy, hsa
    from hsa_geo.reference import hsa_dense
    from hsa_geo.testing import flat_tree, random_forest

    with engine_path(triton):
        pair = Hierarchy.from_parent(*flat_tree(2)).to(device)
        ones = torch.ones(2, 1024, 1, device=device)
        kept = torch.stack([hsa(ones, ones, ones, pair, dropout=0.4) for _ in range(8)])
        print(f'dropout 0.4: kept share {float((kept != 0).float().mean()):.3f} (expected '
              f'0.600), kept value {float(kept.max()):.4f} (expected {1 / 0.6:.4f})')
        h = Hierarchy.from_parent(*random_forest(9, 2, 3, 6)).to(device)
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(h.num_leaves, 2, 8, generator=gen) for _ in range(3)] + \
            [torch.randn(h.num_nodes, 2, 3, generator=gen) * 0.5,
             torch.randn(h.num_pairs, generator=gen)]
        inputs = [t.to(device) for t in inputs]

        def run(*x, seed=0):
            torch.manual_seed(seed)
            return hsa(*x[:3], h, pos=x[3], bias=x[4], causal=True, dropout=0.3)

        first, again, other = run(*inputs), run(*inputs), run(*inputs, seed=1)
        print(f'dropout masks: same seed, same output: {torch.equal(first, again)}; '
              f'another seed, another output: {not torch.equal(first, other)}')
        args = [t.clone().requires_grad_() for t in inputs]
        weights = torch.randn(first.shape, generator=gen).to(device)
        (run(*args) * weights).sum().backward()
        direction = [torch.randn(t.shape, generator=gen).to(device) for t in args]
        eps = 1e-2
        with torch.no_grad():
            plus = (run(*[t + eps * d for t, d in zip(args, direction, strict=True)])
                    * weights).sum()
            minus = (run(*[t - eps * d for t, d in zip(args, direction, strict=True)])
                     * weights).sum()
        numeric = float(plus - minus) / (2 * eps)
        analytic = sum(float((t.grad * d).sum()) for t, d in zip(args, direction, strict=True))
        print(f'dropout backward: directional derivative {analytic:.5f}, central '
              f'differences {numeric:.5f}')
        rounded = [t.bfloat16() for t in inputs[:3]]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = hsa(*rounded, h, pos=inputs[3], bias=inputs[4])
        ref = hsa_dense(*(t.double().cpu() for t in rounded), h.cpu(),
                        pos=inputs[3].double().cpu(), bias=inputs[4].double().cpu())
        print(f'bfloat16 autocast: output {out.dtype}, max |out - reference| '
              f'{float((out.double().cpu() - ref).abs().max()):.2e}')


def exactness(device, forests: int, triton: bool) -> None:
    from tqdm import tqdm

    from hsa_geo import Hierarchy, hsa
    from hsa_geo.reference import hsa_dense
    from hsa_geo.testing import degenerate_forests, random_forest

    cases = [(p, n) for _, p, n in degenerate_forests()] + \
        [random_forest(seed, 3, 4, 6) for seed in range(forests)]
    worst = {'PyTorch path': 0.0, 'Triton path': 0.0, 'Triton gradients': 0.0}
    for index, (parent, n) in enumerate(tqdm(cases, desc='engine vs reference',
                                             file=sys.stderr)):
        h = Hierarchy.from_parent(parent, n).to(device)
        gen = torch.Generator().manual_seed(index)
        q, k, v = (torch.randn(n, 2, 8, generator=gen, dtype=torch.float64) for _ in range(3))
        pos = torch.randn(h.num_nodes, 2, 3, generator=gen, dtype=torch.float64) * 0.5
        bias = torch.randn(h.num_pairs, generator=gen, dtype=torch.float64)
        for include_self, causal in FLAGS:
            ref = hsa_dense(q, k, v, h.cpu(), pos, bias, include_self, causal)
            on = [t.to(device) for t in (q, k, v, pos, bias)]
            with engine_path(False):
                exact = [t.clone().requires_grad_() for t in on]
                out = hsa(*exact[:3], h, exact[3], exact[4], include_self, causal)
                out.sum().backward()
            worst['PyTorch path'] = max(worst['PyTorch path'],
                                        float((out.cpu() - ref).abs().max()))
            if not triton:
                continue
            with engine_path(True):
                fast = [t.float().clone().requires_grad_() for t in on]
                out = hsa(*fast[:3], h, fast[3], fast[4], include_self, causal)
                out.sum().backward()
            worst['Triton path'] = max(worst['Triton path'],
                                       float((out.double().cpu() - ref).abs().max()))
            for a, b in zip(fast, exact, strict=True):
                if b.numel():
                    scale = 1.0 + float(b.grad.abs().max())
                    worst['Triton gradients'] = max(
                        worst['Triton gradients'],
                        float((a.grad.double() - b.grad).abs().max()) / scale)
    print(f"max |PyTorch path - reference| (float64): {worst['PyTorch path']:.2e}")
    if triton:
        print(f"max |Triton path - reference| (float32): {worst['Triton path']:.2e}; "
              f"Triton gradients vs float64, relative: {worst['Triton gradients']:.2e}")
    parent, n = random_forest(1, 2, 3, 3)
    h = Hierarchy.from_parent(parent, n).to(device)
    args = [torch.randn(n, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
            for _ in range(3)]
    with engine_path(False):
        print('gradcheck of the PyTorch path:',
              torch.autograd.gradcheck(lambda q, k, v: hsa(q, k, v, h), args))


def workloads(device, batch_size: int, repeats: int, sync, paths) -> None:
    print('\n| workload | leaves (trees, L_max) | path | HSA fwd ms | HSA fwd+bwd ms '
          '| SDPA fwd ms | SDPA fwd+bwd ms | SDPA / HSA fwd+bwd |')
    print('|---|---|---|---|---|---|---|---|')
    for name, build in (('molecules', molecule_batch), ('points', point_batch),
                        ('news', news_batch)):
        h, (q, k, v), graph, mask = attention_batch(build(batch_size), 4, 32, device=device)
        for path in paths:
            with engine_path(path == 'Triton'):
                t = rounds({'hsa_fwd': functools.partial(hsa_step, h, q, k, v, False),
                            'hsa_fwd_bwd': functools.partial(hsa_step, h, q, k, v, True),
                            'dense_fwd': functools.partial(dense_step, q, k, v, graph, mask,
                                                           False),
                            'dense_fwd_bwd': functools.partial(dense_step, q, k, v, graph, mask,
                                                               True)},
                           repeats, sync)
            print(f"| {name} | {h.num_leaves:,} ({h.num_roots}, {mask.size(1)}) | {path} | "
                  f"{1e3 * t['hsa_fwd']:.2f} | {1e3 * t['hsa_fwd_bwd']:.2f} | "
                  f"{1e3 * t['dense_fwd']:.2f} | {1e3 * t['dense_fwd_bwd']:.2f} | "
                  f"{t['dense_fwd_bwd'] / t['hsa_fwd_bwd']:.2f}x |", flush=True)


def scaling(device, sizes, repeats: int, sync, paths, dense_max: int) -> None:
    from hsa_geo import Hierarchy
    from hsa_geo.testing import regular_tree
    flash = contextlib.nullcontext()
    if device.type == 'cuda':
        from torch.nn.attention import SDPBackend, sdpa_kernel
        flash = sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    print('\n| N | path | HSA fwd ms (float32) | HSA fwd+bwd ms | HSA peak GB | '
          'SDPA fwd ms (flash, float16) | SDPA / HSA fwd |')
    print('|---|---|---|---|---|---|---|')
    for n in sizes:
        h = Hierarchy.from_parent(*regular_tree(n, (16, ) * 8)).to(device)
        q, k, v = (torch.randn(n, 4, 32, device=device) for _ in range(3))
        dense = None
        if n <= dense_max:
            qd, kd, vd = (t.transpose(0, 1).unsqueeze(0).to(torch.float16 if device.type ==
                                                           'cuda' else torch.float32)
                          for t in (q, k, v))

            def sdpa(qd=qd, kd=kd, vd=vd):
                with torch.no_grad(), flash:
                    torch.nn.functional.scaled_dot_product_attention(qd, kd, vd)
            dense = rounds({'sdpa': sdpa}, repeats, sync)['sdpa']
        for path in paths:
            with engine_path(path == 'Triton'):
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats()
                t = rounds({'fwd': functools.partial(hsa_step, h, q, k, v, False),
                            'fwd_bwd': functools.partial(hsa_step, h, q, k, v, True)},
                           repeats, sync)
                peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == 'cuda' else 0
            cells = ['-', '-'] if dense is None else [f'{1e3 * dense:.2f}',
                                                      f"{dense / t['fwd']:.1f}x"]
            print(f"| {n:,} | {path} | {1e3 * t['fwd']:.2f} | {1e3 * t['fwd_bwd']:.2f} | "
                  f"{peak:.2f} | {' | '.join(cells)} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[4096, 65536, 1048576, 4194304],
                        help='N of the scaling table (default: 4k, 64k, 1M, 4M)')
    parser.add_argument('--dense-max', type=int, default=1 << 20,
                        help='largest N for SDPA in the scaling table (default: 1M)')
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds (default: 10)')
    parser.add_argument('--forests', type=int, default=40,
                        help='random forests checked against the reference (default: 40)')
    parser.add_argument('--batch', type=int, default=32, help='samples per batch (default: 32)')
    parser.add_argument('--dry-run', action='store_true',
                        help='every step with tiny sizes on the CPU (the PyTorch path), to '
                             'check the script itself where no GPU is')
    args = parser.parse_args(argv)
    if args.dry_run:
        device, paths, sync = torch.device('cpu'), ['PyTorch'], (lambda: None)
        args.sizes, args.repeats, args.forests, args.batch = [4096], 1, 2, 4
    else:
        if not torch.cuda.is_available():
            raise SystemExit('no CUDA device (use --dry-run to check the script on the CPU)')
        from hsa_geo.engine import triton_kernels
        device, sync = torch.device('cuda'), torch.cuda.synchronize
        paths = ['PyTorch'] + (['Triton'] if triton_kernels.available() else [])
        print(torch.cuda.get_device_name(), 'torch', torch.__version__,
              'triton' if 'Triton' in paths else '(no triton: PyTorch path only)')
    new_kernels(device, 'Triton' in paths)
    exactness(device, args.forests, 'Triton' in paths)
    workloads(device, args.batch, args.repeats, sync, paths)
    scaling(device, args.sizes, args.repeats, sync, paths, args.dense_max)


if __name__ == '__main__':
    main()
