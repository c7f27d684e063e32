r"""Speed and memory of the HSA dynamic program against dense attention.

For N leaves (heads=4, d=32, float32 by default) on regular trees (branching
16 at every level) and random ragged trees (every family 2-32 children), this
measures, each configuration in a fresh process:

* forward and forward+backward time of :func:`hsa_geo.hsa` (median of
  ``--repeats`` runs after a warm-up),
* peak memory: the largest resident-set growth during one forward+backward
  (and one forward), over the memory held before the call (inputs included),
* the same for ``torch.nn.functional.scaled_dot_product_attention`` (full
  softmax attention over all N leaves) where it fits ``--sdpa-max-n``,
* the memory-bandwidth floor: the time to read q, k, v and write the output
  once at this machine's measured copy bandwidth.

Example::

    python benchmarks/bench_hsa.py                      # the full table
    python benchmarks/bench_hsa.py --sizes 1024 16384 --repeats 3 --plot hsa.png
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

from hsa_geo.testing import median_time, rss_bytes

DEFAULT_SIZES = [1024, 4096, 16384, 65536, 262144, 1048576]


def _measure(job: dict) -> dict:
    r"""Runs in a fresh process so that ru_maxrss is this job's own peak."""
    import torch

    from hsa_geo import Hierarchy, hsa
    from hsa_geo.testing import random_ragged_tree, regular_tree

    torch.manual_seed(0)
    n, heads, dim, kind = job['n'], job['heads'], job['dim'], job['kind']
    dtype = getattr(torch, job['dtype'])
    q, k, v = (torch.randn(n, heads, dim, dtype=dtype) for _ in range(3))
    result = dict(job)
    if job['method'] == 'hsa':
        if kind == 'regular':
            parent, num_leaves = regular_tree(n, (16, ) * 12)
        else:
            parent, num_leaves = random_ragged_tree(n, 2, 32, seed=0)
        start = time.perf_counter()
        h = Hierarchy.from_parent(parent, num_leaves)
        result['compile_s'] = time.perf_counter() - start

        def forward():
            with torch.no_grad():
                return hsa(q, k, v, h)

        def forward_backward(q=q, k=k, v=v):
            args = [t.detach().requires_grad_() for t in (q, k, v)]
            hsa(*args, h).sum().backward()
    else:
        def forward():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))

        def forward_backward():
            args = [t.detach().transpose(0, 1).requires_grad_() for t in (q, k, v)]
            torch.nn.functional.scaled_dot_product_attention(*args).sum().backward()

    base = rss_bytes()
    forward()
    result['fwd_peak_gb'] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                             - base) / 1e9
    if job['backward']:
        forward_backward()
        result['peak_gb'] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                             - base) / 1e9
    result['fwd_s'] = median_time(forward, job['repeats'])
    if job['backward']:
        result['fwd_bwd_s'] = median_time(forward_backward, max(1, job['repeats'] - 2))
    return result


def _copy_bandwidth() -> float:
    r"""Bytes moved per second (read + write) by a large in-memory copy."""
    import torch
    src = torch.randn(1 << 27)  # 512 MB
    dst = torch.empty_like(src)
    dst.copy_(src)
    seconds = median_time(lambda: dst.copy_(src), 5)
    return 2 * src.numel() * src.element_size() / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=DEFAULT_SIZES,
                        help='numbers of leaves N (default: 1,024 .. 1,048,576)')
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--dim', type=int, default=32)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float64'])
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed runs per measurement (median reported)')
    parser.add_argument('--sdpa-max-n', type=int, default=16384,
                        help='largest N for the dense SDPA baseline (its time is '
                             'quadratic)')
    parser.add_argument('--no-backward', action='store_true',
                        help='measure the forward pass only')
    parser.add_argument('--plot', metavar='PNG', help='write a log-log plot of time '
                        'against N')
    args = parser.parse_args(argv)

    from tqdm import tqdm

    jobs = []
    for n in args.sizes:
        for kind in ('regular', 'ragged'):
            jobs.append(dict(method='hsa', n=n, kind=kind))
        if n <= args.sdpa_max_n:
            jobs.append(dict(method='sdpa', n=n, kind='dense'))
    common = dict(heads=args.heads, dim=args.dim, dtype=args.dtype,
                  repeats=args.repeats, backward=not args.no_backward)
    ctx = mp.get_context('spawn')
    results = []
    bandwidth = None
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        bandwidth = pool.apply(_copy_bandwidth)
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            results.append(pool.apply(_measure, ({**job, **common}, )))

    element = 4 if args.dtype == 'float32' else 8
    print(f'\nHSA vs SDPA, heads={args.heads}, d={args.dim}, {args.dtype}, '
          f'{os.cpu_count()} CPU threads; copy bandwidth {bandwidth / 1e9:.1f} GB/s '
          f'(read+write)\n')
    header = ('| N | tree | fwd s | fwd+bwd s | peak GB (fwd / fwd+bwd) | '
              'SDPA fwd s | SDPA fwd+bwd s | SDPA peak GB | SDPA/HSA fwd | '
              'SDPA/HSA fwd+bwd | floor s | fwd/floor |')
    print(header)
    print('|' + '|'.join(['---'] * (header.count('|') - 1)) + '|')
    sdpa = {r['n']: r for r in results if r['method'] == 'sdpa'}
    for r in results:
        if r['method'] != 'hsa':
            continue
        s = sdpa.get(r['n'])
        floor = 4 * r['n'] * args.heads * args.dim * element / bandwidth
        cells = [f"{r['n']:,}", r['kind'], f"{r['fwd_s']:.4f}",
                 _fmt(r.get('fwd_bwd_s')),
                 f"{r['fwd_peak_gb']:.2f} / {_fmt(r.get('peak_gb'), 2)}"]
        if s is not None:
            cells += [f"{s['fwd_s']:.4f}", _fmt(s.get('fwd_bwd_s')),
                      f"{s['fwd_peak_gb']:.2f} / {_fmt(s.get('peak_gb'), 2)}",
                      f"{s['fwd_s'] / r['fwd_s']:.1f}x",
                      _ratio(s.get('fwd_bwd_s'), r.get('fwd_bwd_s'))]
        else:
            cells += ['-'] * 5
        cells += [f'{floor:.4f}', f"{r['fwd_s'] / floor:.1f}x"]
        print('| ' + ' | '.join(cells) + ' |')

    regular = {r['n']: r for r in results if r['method'] == 'hsa' and r['kind'] == 'regular'}
    ragged = {r['n']: r for r in results if r['method'] == 'hsa' and r['kind'] == 'ragged'}
    print('\nragged / regular forward time per leaf: ' + ', '.join(
        f"N={n:,}: {ragged[n]['fwd_s'] / regular[n]['fwd_s']:.2f}x"
        for n in regular if n in ragged))

    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for label, rows, key in (('HSA regular fwd', regular, 'fwd_s'),
                                 ('HSA ragged fwd', ragged, 'fwd_s'),
                                 ('HSA regular fwd+bwd', regular, 'fwd_bwd_s'),
                                 ('SDPA fwd', sdpa, 'fwd_s'),
                                 ('SDPA fwd+bwd', sdpa, 'fwd_bwd_s')):
            xs = sorted(n for n in rows if rows[n].get(key) is not None)
            if xs:
                ax.loglog(xs, [rows[n][key] for n in xs], marker='o', label=label)
        ax.set_xlabel('number of leaves N')
        ax.set_ylabel('seconds (median)')
        ax.set_title(f'HSA vs dense attention, heads={args.heads}, d={args.dim}')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f'plot written to {args.plot}')


def _fmt(x, digits=4):
    return '-' if x is None else f'{x:.{digits}f}'


def _ratio(a, b):
    return '-' if a is None or b is None else f'{a / b:.1f}x'


if __name__ == '__main__':
    main()
