r"""HSAGPSConv against PyG's GPSConv (multihead and performer attention).

One training step (forward, backward, Adam update) of ``Linear -> GPS layer ->
Linear`` with the same hidden size and a GIN local layer, on one random graph
of N nodes (average degree 10), each configuration in a fresh process:
median time per step and peak resident-memory growth.  HSA attends over a
regular hierarchy on the node order (families of 16, then 16, ...): this
measures cost, not accuracy.  A configuration that runs out of memory (or is
killed) is reported as OOM.

Example::

    python benchmarks/bench_gps.py
    python benchmarks/bench_gps.py --sizes 100 1000 --repeats 3
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys

from hsa_geo.testing import median_time, rss_bytes

DEFAULT_SIZES = [100, 1000, 10000, 100000]
METHODS = ['hsa', 'multihead', 'performer']


def _measure(job: dict) -> dict:
    import torch
    from torch_geometric.nn import GINConv, GPSConv
    from torch_geometric.utils import to_undirected

    from hsa_geo import Hierarchy
    from hsa_geo.nn import HSAGPSConv
    from hsa_geo.testing import regular_tree

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
        optimizer.zero_grad()
        h = model[0](x)
        if hierarchy is None:
            h = model[1](h, edge_index, batch)
        else:
            h = model[1](h, edge_index, batch, hierarchy=hierarchy)
        loss = (model[2](h) - target).pow(2).mean()
        loss.backward()
        optimizer.step()

    result = dict(job)
    base = rss_bytes()
    step()
    result['peak_gb'] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                         - base) / 1e9
    result['step_s'] = median_time(step, job['repeats'], warmup=False)
    result['params'] = sum(p.numel() for p in model.parameters())
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=DEFAULT_SIZES,
                        help='numbers of nodes (default: 100 1000 10000 100000)')
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed steps per configuration (median reported)')
    parser.add_argument('--methods', nargs='+', default=METHODS, choices=METHODS)
    args = parser.parse_args(argv)

    from tqdm import tqdm

    ctx = mp.get_context('spawn')
    results = []
    jobs = [dict(n=n, method=m, hidden=args.hidden, heads=args.heads,
                 repeats=args.repeats) for n in args.sizes for m in args.methods]
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        results.append(_run_isolated(ctx, job))

    print(f'\nOne training step of Linear -> GPS layer -> Linear, hidden={args.hidden}, '
          f'heads={args.heads}, {os.cpu_count()} CPU threads, one graph of N nodes\n')
    print('| N | ' + ' | '.join(f'{m} step s | {m} peak GB' for m in args.methods)
          + ' | GPS multihead / HSA | GPS performer / HSA |')
    print('|' + '|'.join(['---'] * (2 * len(args.methods) + 3)) + '|')
    for n in args.sizes:
        row = {r['method']: r for r in results if r['n'] == n}
        cells = [f'{n:,}']
        for m in args.methods:
            r = row.get(m, {})
            if 'step_s' in r:
                cells += [f"{r['step_s']:.4f}", f"{r['peak_gb']:.2f}"]
            else:
                cells += ['OOM' if r else '-', '-']
        for m in ('multihead', 'performer'):
            a, b = row.get(m, {}), row.get('hsa', {})
            cells.append(f"{a['step_s'] / b['step_s']:.1f}x"
                         if 'step_s' in a and 'step_s' in b else '-')
        print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
