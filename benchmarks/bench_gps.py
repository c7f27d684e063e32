r"""HSAGPSConv against PyG's GPSConv (multihead and performer attention).

One training step (forward, backward, Adam update) of ``Linear -> GPS layer ->
Linear`` with the same hidden size and a GIN local layer, on one random graph
of N nodes (average degree 10), each configuration in a fresh process on
``--threads`` CPU threads: the time of every step and the peak
resident-memory growth of the first.  HSA attends over a regular hierarchy
on the node order (families of 16, then 16, ...): this measures cost, not
accuracy.  A configuration that runs out of memory (or is killed) is
reported as OOM.

Every step's time goes to the result file (``--out``); the table (medians and
ratios) is computed from it, and ``--report RESULT_JSON`` prints it again from
the file alone.

Example::

    python benchmarks/bench_gps.py
    python benchmarks/bench_gps.py --sizes 100 1000 --repeats 3
    python benchmarks/bench_gps.py --sizes 100 1000 10000 100000 --repeats 3 3 3 1
    python benchmarks/bench_gps.py --report results/bench_gps.json
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os.path as osp
import resource
import statistics
import sys
import time

from hsa_geo.experiments import load_result, provenance, provenance_note, save_json

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_SIZES = [100, 1000, 10000, 100000]
METHODS = ['hsa', 'multihead', 'performer']


def _measure(job: dict) -> dict:
    import torch
    from torch_geometric.nn import GINConv, GPSConv
    from torch_geometric.utils import to_undirected

    from hsa_geo import Hierarchy
    from hsa_geo.nn import HSAGPSConv
    from hsa_geo.testing import regular_tree, rss_bytes

    torch.set_num_threads(job['threads'])
    torch.manual_seed(0)
    n, hidden, heads = job['n'], job['hidden'], job['heads']
    x = torch.randn(n, 16)
    edge_index = to_undirected(torch.randint(0, n, (2, 5 * n)), num_nodes=n)
    batch = torch.zeros(n, dtype=torch.long)
    target = torch.randn(n, 1)
    local = GINConv(torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(hidden, hidden)))
    hierarchy = None
    if job['method'] == 'hsa':
        layer = HSAGPSConv(hidden, local, heads=heads)
        hierarchy = Hierarchy.from_parent(*regular_tree(n, (16, ) * 8))
    else:
        layer = GPSConv(hidden, local, heads=heads, attn_type=job['method'])
    model = torch.nn.ModuleList([torch.nn.Linear(16, hidden), layer,
                                 torch.nn.Linear(hidden, 1)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        start = time.perf_counter()
        optimizer.zero_grad()
        h = model[0](x)
        if hierarchy is None:
            h = model[1](h, edge_index, batch)
        else:
            h = model[1](h, edge_index, batch, hierarchy=hierarchy)
        loss = (model[2](h) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    result = dict(job)
    # peak = the process's largest resident set after the first step - before it
    result['rss_before_bytes'] = rss_bytes()
    result['first_step_s'] = step()   # untimed in the table: the warm-up
    result['maxrss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result['step_times'] = [step() for _ in range(job['repeats'])]
    result['params'] = sum(p.numel() for p in model.parameters())
    result['torch_threads'] = torch.get_num_threads()
    return result


def _child(job: dict, queue):
    try:
        queue.put(_measure(job))
    except Exception as e:  # noqa: BLE001  (an allocation that failed)
        queue.put({**job, 'error': f'{type(e).__name__}: {str(e)[:80]}'})


def _run_isolated(ctx, job: dict) -> dict:
    r"""Runs one configuration in a fresh process; a process killed by the
    kernel's OOM killer counts as out of memory."""
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(job, queue))
    process.start()
    process.join()
    if not queue.empty():
        return queue.get()
    return {**job, 'error': f'killed (exit code {process.exitcode})'}


# ------------------------------------------------------------------ report
def table(result: dict) -> str:
    r"""Median step and peak memory per size and method, and the ratios of
    the medians, from the raw runs (a run with an ``'error'`` is OOM)."""
    methods, sizes = result['args']['methods'], result['args']['sizes']
    head = ['N'] + [f'{m} {c}' for m in methods for c in ('step s', 'peak GB')] + \
        ['GPS multihead / HSA', 'GPS performer / HSA']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for n in sizes:
        row = {r['method']: r for r in result['runs'] if r['n'] == n}
        median = {m: statistics.median(r['step_times']) for m, r in row.items()
                  if r.get('step_times')}
        cells = [f'{n:,}']
        for m in methods:
            if m in median:
                r = row[m]
                cells += [f'{median[m]:.4f}',
                          f"{(r['maxrss_bytes'] - r['rss_before_bytes']) / 1e9:.2f}"]
            else:
                cells += ['OOM' if m in row else '-', '-']
        for m in ('multihead', 'performer'):
            cells.append(f"{median[m] / median['hsa']:.1f}x"
                         if m in median and 'hsa' in median else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def report(result: dict, path: str) -> str:
    r"""The table of a result file, and the line saying where it comes from."""
    return table(result) + '\n\n' + provenance_note(result, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=DEFAULT_SIZES,
                        help='numbers of nodes (default: 100 1000 10000 100000)')
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--repeats', type=int, nargs='+', default=[5],
                        help='timed steps per configuration after a warm-up step (median '
                             'reported): one number, or one per size (default: 5)')
    parser.add_argument('--methods', nargs='+', default=METHODS, choices=METHODS)
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads of every measuring process (default: 1)')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the CPU only: the peak memory is the resident set)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_gps.json'),
                        help='the result file, every step (default: results/bench_gps.json)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print the table of this result file')
    args = parser.parse_args(argv)
    if args.report:
        print(report(load_result(args.report), args.report))
        return
    if len(args.repeats) not in (1, len(args.sizes)):
        parser.error(f'--repeats takes one number or one per size ({len(args.sizes)}), '
                     f'got {len(args.repeats)}')
    repeats = args.repeats * len(args.sizes) if len(args.repeats) == 1 else args.repeats

    import torch
    from tqdm import tqdm
    torch.set_num_threads(args.threads)

    ctx = mp.get_context('spawn')
    result = {'args': vars(args), 'runs': []}
    jobs = [dict(n=n, method=m, hidden=args.hidden, heads=args.heads, repeats=r,
                 threads=args.threads)
            for n, r in zip(args.sizes, repeats) for m in args.methods]
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        result['runs'].append(_run_isolated(ctx, job))
        save_json(result, args.out)  # an interrupted run keeps what it measured
    result['provenance'] = provenance(args.device)
    save_json(result, args.out)

    print(f'\nOne training step of Linear -> GPS layer -> Linear, hidden={args.hidden}, '
          f'heads={args.heads}, {args.threads} CPU thread(s), one graph of N nodes; '
          f'medians\n')
    print(report(result, args.out))


if __name__ == '__main__':
    main()
