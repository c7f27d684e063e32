r"""Scale of the hierarchy builders (median wall time of a few runs).

Targets of the builders issue on a 2-core CPU: octree on 1,000,000 points
within 10 s; text of 10,000 words within 1 s; a graph of 1,000,000 nodes with
10 edges per node within 60 s (the spectral graph builder; the Louvain one is
networkx code and is measured on smaller graphs, see --graph-sizes).

Every timed run (the build, then ``Hierarchy.from_hetero`` of what it built,
each after an untimed run) goes to the result file (``--out``); the table (medians, targets met) is
computed from it, and ``--report RESULT_JSON`` prints it again from the file
alone.

Example::

    python benchmarks/bench_builders.py
    python benchmarks/bench_builders.py --points 100000 --graph-sizes 1000 10000
    python benchmarks/bench_builders.py --report results/bench_builders.json
"""
from __future__ import annotations

import argparse
import functools
import os.path as osp
import random
import statistics
import sys
import time
from typing import Callable, List

from hsa_geo.experiments import load_result, provenance, provenance_note, save_json

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# how the table names each builder, from what the result file records of it
LABELS = {'octree': 'octree, {size:,} points (depth {depth})',
          'text': 'text, {size:,} words',
          'sequence': 'sequence windows (2,4,8,16), {size:,} tokens',
          'louvain': 'Louvain graph, {size:,} nodes, 10 edges/node',
          'spectral': 'spectral graph (16,16,16,16), {size:,} nodes, 10 edges/node'}


def _times(fn: Callable[[], object], repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def jobs(args) -> list:
    r"""``(record, build)`` per builder: what the result file says of it
    (``builder``, ``size``, ``target_s``, ...) and the call building it."""
    import torch
    from torch_geometric.data import Data

    from hsa_geo.transforms import (
        GraphHierarchy,
        SequenceHierarchy,
        TextHierarchy,
        VoxelHierarchy,
        auto_depth,
    )
    random.seed(0)
    torch.manual_seed(0)
    pos = torch.rand(args.points, 3)
    depth = auto_depth(args.points, 3)
    words = ['alpha', 'beta,', 'gamma', 'delta.', 'epsilon', 'zeta!', 'eta']
    text = ' '.join(random.choice(words) for _ in range(args.words))
    out = [
        (dict(builder='octree', size=args.points, depth=depth, target_s=10.0),
         lambda: VoxelHierarchy(depth)(Data(pos=pos))),
        (dict(builder='text', size=args.words, target_s=1.0),
         lambda: TextHierarchy()(Data(text=text))),
        (dict(builder='sequence', size=args.sequence, target_s=None),
         lambda: SequenceHierarchy((2, 4, 8, 16))(Data(num_nodes=args.sequence))),
    ]
    for n in args.graph_sizes:
        edge_index = torch.randint(0, n, (2, 5 * n))
        out.append((dict(builder='louvain', size=n, target_s=None),
                    lambda n=n, e=edge_index: GraphHierarchy()(Data(num_nodes=n,
                                                                    edge_index=e))))
    for n in args.spectral_sizes:
        edge_index = torch.randint(0, n, (2, 5 * n))
        out.append((dict(builder='spectral', size=n,
                         target_s=60.0 if n >= 1_000_000 else None),
                    lambda n=n, e=edge_index: GraphHierarchy(
                        method='spectral', branching=(16, 16, 16, 16))(
                            Data(num_nodes=n, edge_index=e))))
    return out


# ------------------------------------------------------------------ report
def table(result: dict) -> str:
    r"""Median build and ``from_hetero`` seconds per builder, and whether the
    median build meets its target."""
    lines = ['| builder | build s | `Hierarchy.from_hetero` s | target |', '|---|---|---|---|']
    for r in result['runs']:
        build = statistics.median(r['build_times'])
        compile_s = statistics.median(r['from_hetero_times'])
        target = r['target_s']
        verdict = '-' if target is None else \
            f"< {target:g} s: {'met' if build < target else 'not met'}"
        lines.append(f'| {LABELS[r["builder"]].format(**r)} | {build:.3f} | {compile_s:.3f} '
                     f'| {verdict} |')
    return '\n'.join(lines)


def report(result: dict, path: str) -> str:
    r"""The table of a result file, and the line saying where it comes from."""
    return table(result) + '\n\n' + provenance_note(result, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--points', type=int, default=1_000_000)
    parser.add_argument('--words', type=int, default=10_000)
    parser.add_argument('--sequence', type=int, default=1_000_000)
    parser.add_argument('--graph-sizes', type=int, nargs='+', default=[1_000, 10_000],
                        help='graph sizes for the (networkx) Louvain builder')
    parser.add_argument('--spectral-sizes', type=int, nargs='+', default=[1_000_000],
                        help='graph sizes for the spectral builder')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed runs of each builder and of from_hetero, after an '
                             'untimed one of each (median reported; default: 3)')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads (default: 1)')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the builders are CPU code)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_builders.json'),
                        help='the result file, every run (default: results/bench_builders.json)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print the table of this result file')
    args = parser.parse_args(argv)
    if args.report:
        print(report(load_result(args.report), args.report))
        return

    import torch
    from tqdm import tqdm

    from hsa_geo import Hierarchy
    torch.set_num_threads(args.threads)
    result = {'args': vars(args), 'runs': []}
    for record, build in tqdm(jobs(args), desc='builders', file=sys.stderr):
        out = build()                       # untimed: the first run of each
        Hierarchy.from_hetero(out)
        record['build_times'] = _times(build, args.repeats)
        record['from_hetero_times'] = _times(functools.partial(Hierarchy.from_hetero, out),
                                             args.repeats)
        result['runs'].append(record)
        save_json(result, args.out)  # an interrupted run keeps what it measured
    result['provenance'] = provenance(args.device)
    save_json(result, args.out)
    print(f'\nHierarchy builders, {args.threads} thread(s), medians of {args.repeats} runs\n')
    print(report(result, args.out))


if __name__ == '__main__':
    main()
