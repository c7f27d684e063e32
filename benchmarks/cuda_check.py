r"""One prepared check for a machine with a GPU: the engine on CUDA against the
dense reference, a gradient check, then a speed table against SDPA.

Example::

    python benchmarks/cuda_check.py              # needs a CUDA device
    python benchmarks/cuda_check.py --sizes 65536 1048576 --repeats 10
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[4096, 65536, 1048576, 4194304])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--forests', type=int, default=100,
                        help='random forests checked against the reference')
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from hsa_geo import Hierarchy, hsa
    from hsa_geo.reference import hsa_dense
    from hsa_geo.testing import random_forest, regular_tree

    if not torch.cuda.is_available():
        raise SystemExit('no CUDA device')
    device = torch.device('cuda')
    print(torch.cuda.get_device_name(), torch.__version__)

    worst = 0.0
    for seed in tqdm(range(args.forests), desc='DP vs reference on CUDA'):
        parent, n = random_forest(seed, 3, 4, 6)
        h = Hierarchy.from_parent(parent, n).to(device)
        gen = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(n, 2, 4, generator=gen, dtype=torch.float64) for _ in range(3))
        pos = torch.randn(h.num_nodes, 2, 3, generator=gen, dtype=torch.float64)
        bias = torch.randn(h.num_pairs, generator=gen, dtype=torch.float64)
        for include_self in (False, True):
            for causal in (False, True):
                out = hsa(q.to(device), k.to(device), v.to(device), h, pos.to(device),
                          bias.to(device), include_self, causal)
                ref = hsa_dense(q, k, v, h.cpu(), pos, bias, include_self, causal)
                worst = max(worst, float((out.cpu() - ref).abs().max()))
    print(f'max |DP - reference| on CUDA, float64: {worst:.2e}')
    parent, n = random_forest(1, 2, 3, 3)
    h = Hierarchy.from_parent(parent, n).to(device)
    args_ = [torch.randn(n, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
             for _ in range(3)]
    print('gradcheck on CUDA:', torch.autograd.gradcheck(lambda q, k, v: hsa(q, k, v, h), args_))

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    print('\n| N | HSA fwd s | HSA fwd+bwd s | HSA peak GB | SDPA fwd s | SDPA/HSA fwd |')
    print('|---|---|---|---|---|---|')
    for n in args.sizes:
        h = Hierarchy.from_parent(*regular_tree(n, (16, ) * 8)).to(device)
        q, k, v = (torch.randn(n, 4, 32, device=device) for _ in range(3))
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            fwd = timed(lambda: hsa(q, k, v, h))

        def fwd_bwd():
            a = [t.detach().requires_grad_() for t in (q, k, v)]
            hsa(*a, h).sum().backward()

        both = timed(fwd_bwd)
        peak = torch.cuda.max_memory_allocated() / 1e9
        sdpa = '-'
        ratio = '-'
        if n <= 65536:
            with torch.no_grad():
                # [1, heads, N, d]: 4-D input lets SDPA pick its memory-efficient
                # kernel; 3-D input fell back to the math kernel (N^2 scores, OOM)
                s = timed(lambda: torch.nn.functional.scaled_dot_product_attention(
                    *(t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))))
            sdpa, ratio = f'{s:.4f}', f'{s / fwd:.1f}x'
        print(f'| {n:,} | {fwd:.4f} | {both:.4f} | {peak:.2f} | {sdpa} | {ratio} |')


if __name__ == '__main__':
    main()
