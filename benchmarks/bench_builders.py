r"""Scale of the hierarchy builders (median wall time of a few runs).

Targets of the builders issue on a 2-core CPU: octree on 1,000,000 points
within 10 s; text of 10,000 words within 1 s; a graph of 1,000,000 nodes with
10 edges per node within 60 s (the spectral graph builder; the Louvain one is
networkx code and is measured on smaller graphs, see --graph-sizes).

Example::

    python benchmarks/bench_builders.py
    python benchmarks/bench_builders.py --points 100000 --graph-sizes 1000 10000
"""
from __future__ import annotations

import argparse
import random
import sys
import time

from hsa_geo.testing import median_time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--points', type=int, default=1_000_000)
    parser.add_argument('--words', type=int, default=10_000)
    parser.add_argument('--sequence', type=int, default=1_000_000)
    parser.add_argument('--graph-sizes', type=int, nargs='+', default=[1_000, 10_000],
                        help='graph sizes for the (networkx) Louvain builder')
    parser.add_argument('--spectral-sizes', type=int, nargs='+', default=[1_000_000],
                        help='graph sizes for the spectral builder')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from torch_geometric.data import Data
    from tqdm import tqdm

    from hsa_geo import Hierarchy
    from hsa_geo.transforms import (
        GraphHierarchy,
        SequenceHierarchy,
        TextHierarchy,
        VoxelHierarchy,
        auto_depth,
    )

    rows = []
    random.seed(0)
    torch.manual_seed(0)
    pos = torch.rand(args.points, 3)
    depth = auto_depth(args.points, 3)
    words = ['alpha', 'beta,', 'gamma', 'delta.', 'epsilon', 'zeta!', 'eta']
    text = ' '.join(random.choice(words) for _ in range(args.words))
    jobs = [
        (f'octree, {args.points:,} points (depth {depth})',
         lambda: VoxelHierarchy(depth)(Data(pos=pos)), 10.0),
        (f'text, {args.words:,} words', lambda: TextHierarchy()(Data(text=text)), 1.0),
        (f'sequence windows (2,4,8,16), {args.sequence:,} tokens',
         lambda: SequenceHierarchy((2, 4, 8, 16))(Data(num_nodes=args.sequence)), None),
    ]
    for n in args.graph_sizes:
        edge_index = torch.randint(0, n, (2, 5 * n))
        jobs.append((f'Louvain graph, {n:,} nodes, 10 edges/node',
                     lambda n=n, e=edge_index: GraphHierarchy()(Data(num_nodes=n, edge_index=e)),
                     None))
    for n in args.spectral_sizes:
        edge_index = torch.randint(0, n, (2, 5 * n))
        jobs.append((f'spectral graph (16,16,16,16), {n:,} nodes, 10 edges/node',
                     lambda n=n, e=edge_index: GraphHierarchy(
                         method='spectral', branching=(16, 16, 16, 16))(
                             Data(num_nodes=n, edge_index=e)),
                     60.0 if n >= 1_000_000 else None))
    for name, fn, target in tqdm(jobs, desc='builders', file=sys.stderr):
        out = fn()
        seconds = median_time(fn, args.repeats, warmup=False)
        start = time.perf_counter()
        Hierarchy.from_hetero(out)
        compile_s = time.perf_counter() - start
        rows.append((name, seconds, compile_s, target))

    print('\n| builder | build s (median) | Hierarchy.from_hetero s | target |')
    print('|---|---|---|---|')
    for name, seconds, compile_s, target in rows:
        verdict = '-' if target is None else \
            f"< {target:g} s: {'met' if seconds < target else 'not met'}"
        print(f'| {name} | {seconds:.3f} | {compile_s:.3f} | {verdict} |')


if __name__ == '__main__':
    main()
