r"""Speed and memory of the HSA dynamic program against dense attention.

For N leaves (heads=4, d=32, float32 by default) on regular trees (branching
16 at every level) and random ragged trees (every family 2-32 children), this
measures, each configuration in a fresh process on ``--threads`` CPU threads:

* forward and forward+backward time of :func:`hsa_geo.hsa` (every one of
  ``--repeats`` runs after a warm-up; forward+backward ``--repeats - 2``),
* peak memory: the largest resident-set growth during one forward+backward
  (and one forward), over the memory held before the call (inputs included),
* the same for ``torch.nn.functional.scaled_dot_product_attention`` (full
  softmax attention over all N leaves) where it fits ``--sdpa-max-n``,
* the memory-bandwidth floor: the time to read q, k, v and write the output
  once at this machine's measured copy bandwidth.

Every run's time goes to the result file (``--out``); the table (medians and
ratios) is computed from it, and ``--report RESULT_JSON`` prints it again from
the file alone (``--table ragged``: the ragged / regular forward time per
leaf; ``--plot PNG``: the plot, in either mode).

Example::

    python benchmarks/bench_hsa.py                      # the full table
    python benchmarks/bench_hsa.py --sizes 1024 16384 --repeats 3 --plot hsa.png
    python benchmarks/bench_hsa.py --report results/bench_hsa.json
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os.path as osp
import resource
import statistics
import sys
import time
from typing import List

from hsa_geo.experiments import load_result, provenance, provenance_note, save_json

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_SIZES = [1024, 4096, 16384, 65536, 262144, 1048576]
TABLES = ('scaling', 'ragged')


def _times(fn, repeats: int) -> List[float]:
    r"""Seconds of each of :obj:`repeats` calls of :obj:`fn`, after one untimed call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _measure(job: dict) -> dict:
    r"""Runs in a fresh process so that ru_maxrss is this job's own peak."""
    import torch

    from hsa_geo import Hierarchy, hsa
    from hsa_geo.testing import random_ragged_tree, regular_tree, rss_bytes

    torch.set_num_threads(job['threads'])
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

    # peak = the process's largest resident set after the call - before it
    result['rss_before_bytes'] = rss_bytes()
    forward()
    result['maxrss_fwd_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if job['backward']:
        forward_backward()
        result['maxrss_fwd_bwd_bytes'] = \
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result['fwd_times'] = _times(forward, job['repeats'])
    if job['backward']:
        result['fwd_bwd_times'] = _times(forward_backward, max(1, job['repeats'] - 2))
    result['torch_threads'] = torch.get_num_threads()
    return result


def _copy_bandwidth(threads: int) -> dict:
    r"""A large in-memory copy: the bytes it moves (read + write) and the
    seconds of each of 5 copies."""
    import torch
    torch.set_num_threads(threads)
    src = torch.randn(1 << 27)  # 512 MB
    dst = torch.empty_like(src)
    return {'bytes': 2 * src.numel() * src.element_size(),
            'times': _times(lambda: dst.copy_(src), 5)}


# ------------------------------------------------------------------ report
def _median(run: dict, key: str):
    return statistics.median(run[key]) if run.get(key) else None


def _peak_gb(run: dict, key: str):
    return None if key not in run else (run[key] - run['rss_before_bytes']) / 1e9


def _fmt(x, digits=4):
    return '-' if x is None else f'{x:.{digits}f}'


def _ratio(a, b):
    return '-' if a is None or b is None else f'{a / b:.1f}x'


def _rows(result: dict, method: str, kind: str = None) -> dict:
    return {r['n']: r for r in result['runs']
            if r['method'] == method and (kind is None or r['kind'] == kind)}


def scaling_table(result: dict) -> str:
    r"""The table of medians, peaks and ratios, from the raw runs."""
    args = result['args']
    element = 4 if args['dtype'] == 'float32' else 8
    bandwidth = result['copy']['bytes'] / statistics.median(result['copy']['times'])
    head = ['N', 'tree', 'fwd s', 'fwd+bwd s', 'peak GB (fwd / fwd+bwd)', 'SDPA fwd s',
            'SDPA fwd+bwd s', 'SDPA peak GB', 'SDPA/HSA fwd', 'SDPA/HSA fwd+bwd', 'floor s',
            'fwd/floor']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    sdpa = _rows(result, 'sdpa')
    for r in result['runs']:
        if r['method'] != 'hsa':
            continue
        fwd, fwd_bwd = _median(r, 'fwd_times'), _median(r, 'fwd_bwd_times')
        floor = 4 * r['n'] * args['heads'] * args['dim'] * element / bandwidth
        cells = [f"{r['n']:,}", r['kind'], f'{fwd:.4f}', _fmt(fwd_bwd),
                 f"{_peak_gb(r, 'maxrss_fwd_bytes'):.2f} / "
                 f"{_fmt(_peak_gb(r, 'maxrss_fwd_bwd_bytes'), 2)}"]
        s = sdpa.get(r['n'])
        if s is not None:
            s_fwd, s_fwd_bwd = _median(s, 'fwd_times'), _median(s, 'fwd_bwd_times')
            cells += [f'{s_fwd:.4f}', _fmt(s_fwd_bwd),
                      f"{_peak_gb(s, 'maxrss_fwd_bytes'):.2f} / "
                      f"{_fmt(_peak_gb(s, 'maxrss_fwd_bwd_bytes'), 2)}",
                      _ratio(s_fwd, fwd), _ratio(s_fwd_bwd, fwd_bwd)]
        else:
            cells += ['-'] * 5
        cells += [f'{floor:.4f}', f'{fwd / floor:.1f}x']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def ragged_table(result: dict) -> str:
    r"""Ragged / regular forward time (the same N: per leaf) at every N."""
    regular, ragged = _rows(result, 'hsa', 'regular'), _rows(result, 'hsa', 'ragged')
    lines = ['| N | ragged / regular fwd |', '|---|---|']
    for n in regular:
        if n in ragged:
            ratio = _median(ragged[n], 'fwd_times') / _median(regular[n], 'fwd_times')
            lines.append(f'| {n:,} | {ratio:.2f}x |')
    return '\n'.join(lines)


def report(result: dict, path: str, table: str = 'scaling') -> str:
    r"""The table :obj:`table` of a result file, and the line saying where it
    comes from."""
    text = scaling_table(result) if table == 'scaling' else ragged_table(result)
    return text + '\n\n' + provenance_note(result, path)


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    args = result['args']
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, rows, key in (('HSA regular fwd', _rows(result, 'hsa', 'regular'), 'fwd_times'),
                             ('HSA ragged fwd', _rows(result, 'hsa', 'ragged'), 'fwd_times'),
                             ('HSA regular fwd+bwd', _rows(result, 'hsa', 'regular'),
                              'fwd_bwd_times'),
                             ('SDPA fwd', _rows(result, 'sdpa'), 'fwd_times'),
                             ('SDPA fwd+bwd', _rows(result, 'sdpa'), 'fwd_bwd_times')):
        xs = sorted(n for n in rows if rows[n].get(key))
        if xs:
            ax.loglog(xs, [_median(rows[n], key) for n in xs], marker='o', label=label)
    ax.set_xlabel('number of leaves N')
    ax.set_ylabel('seconds (median)')
    ax.set_title(f"HSA vs dense attention, heads={args['heads']}, d={args['dim']}")
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={'Software': None})
    print(f'plot written to {path}', file=sys.stderr)


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
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads of every measuring process (default: 1)')
    parser.add_argument('--plot', metavar='PNG', help='write a log-log plot of time '
                        'against N')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the CPU only: the peak memory is the resident set)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_hsa.json'),
                        help='the result file, every run (default: results/bench_hsa.json)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print the table of this result file')
    parser.add_argument('--table', choices=TABLES, default='scaling',
                        help='with --report: which table (default: scaling)')
    args = parser.parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report, args.table))
        if args.plot:
            plot(result, args.plot)
        return

    import torch
    from tqdm import tqdm
    torch.set_num_threads(args.threads)

    jobs = []
    for n in args.sizes:
        for kind in ('regular', 'ragged'):
            jobs.append(dict(method='hsa', n=n, kind=kind))
        if n <= args.sdpa_max_n:
            jobs.append(dict(method='sdpa', n=n, kind='dense'))
    common = dict(heads=args.heads, dim=args.dim, dtype=args.dtype, repeats=args.repeats,
                  backward=not args.no_backward, threads=args.threads)
    ctx = mp.get_context('spawn')
    result = {'args': vars(args), 'runs': []}
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        result['copy'] = pool.apply(_copy_bandwidth, (args.threads, ))
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            result['runs'].append(pool.apply(_measure, ({**job, **common}, )))
        save_json(result, args.out)  # an interrupted run keeps what it measured
    result['provenance'] = provenance(args.device)
    save_json(result, args.out)

    bandwidth = result['copy']['bytes'] / statistics.median(result['copy']['times'])
    print(f'\nHSA vs SDPA, heads={args.heads}, d={args.dim}, {args.dtype}, '
          f'{args.threads} CPU thread(s); copy bandwidth {bandwidth / 1e9:.1f} GB/s '
          f'(read+write); medians\n')
    for table in TABLES:
        print(report(result, args.out, table), end='\n\n')
    if args.plot:
        plot(result, args.plot)


if __name__ == '__main__':
    main()
