r"""Hierarchies of large graphs: how fast each builder partitions a graph
with planted nested communities, and how well its levels agree with them.

The graphs are SYNTHETIC (:func:`hsa_geo.datasets.planted_hierarchy_graph`):
``--parts`` blocks per block from the top down (default 16 x 16 x 16: a
4-level hierarchy with the nodes), ``--within`` the share of each node's
edges inside its block at each level (finest first), mean degree
``--degree``.  Every builder is asked for the planted block counts; the
table gives the partition time (the cluster labels of every level; the
position vectors of :class:`GraphHierarchy` are a separate cost), the median
over ``--seeds`` graphs, and the adjusted Rand index (ARI) and normalised
mutual information (NMI) with the planted blocks per level, finest first,
mean over the graphs.  Louvain (networkx) runs only up to ``--louvain-max``
nodes.

Example::

    python benchmarks/bench_large_graphs.py                       # 10^4..10^6 nodes
    python benchmarks/bench_large_graphs.py --sizes 10000 --seeds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def spectral_branching(num_nodes: int, parts):
    r"""The spectral builder's window sizes (bottom-up) for the planted block
    counts (top-down)."""
    sizes, count = [], 1
    for k in parts:
        count *= k
        sizes.append(max(num_nodes // count, 2))
    sizes = sizes[::-1]
    return [sizes[0]] + [max(round(sizes[i] / sizes[i - 1]), 2) for i in range(1, len(sizes))]


def builders(parts, louvain_max: int):
    from hsa_geo.transforms.graph import GraphHierarchy, _spectral_labels
    from hsa_geo.utils import metis_levels

    def spectral(edge_index, n, seed):
        return _spectral_labels(edge_index, n, spectral_branching(n, parts), seed)

    def metis(edge_index, n, seed):
        return metis_levels(edge_index, n, parts, seed)

    def louvain(edge_index, n, seed):
        if n > louvain_max:
            return None
        return GraphHierarchy(num_levels=len(parts), seed=seed)._louvain_labels(edge_index, n)

    return {'spectral windows': spectral, 'METIS (nested k-way)': metis,
            'Louvain (networkx)': louvain}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--parts', type=int, nargs='+', default=[16, 16, 16],
                        help='planted blocks per block, top-down')
    parser.add_argument('--within', type=float, nargs='+', default=[0.6, 0.2, 0.1],
                        help='share of edges inside the block at each level, finest first')
    parser.add_argument('--degree', type=int, default=20, help='mean degree')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--louvain-max', type=int, default=20_000)
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from tqdm import tqdm

    from hsa_geo.datasets import planted_hierarchy_graph

    torch.set_num_threads(1)
    rows = []
    jobs = [(n, seed) for n in args.sizes for seed in range(args.seeds)]
    results = {}
    for n, seed in tqdm(jobs, desc='graphs', file=sys.stderr):
        edge_index, planted = planted_hierarchy_graph(n, args.degree, args.parts,
                                                      args.within, seed=seed)
        for name, build in builders(args.parts, args.louvain_max).items():
            start = time.perf_counter()
            labels = build(edge_index, n, seed)
            seconds = time.perf_counter() - start
            if labels is None:
                continue
            ari = [adjusted_rand_score(p.numpy(), f.numpy()) for p, f in zip(planted, labels)]
            nmi = [normalized_mutual_info_score(p.numpy(), f.numpy())
                   for p, f in zip(planted, labels)]
            results.setdefault((n, name), []).append((seconds, ari, nmi))
    for (n, name), runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        levels = len(runs[0][1])
        ari = [statistics.fmean(r[1][i] for r in runs) for i in range(levels)]
        nmi = [statistics.fmean(r[2][i] for r in runs) for i in range(levels)]
        rows.append((n, name, seconds, ari, nmi, len(runs)))
    print(f"\nSYNTHETIC planted graphs: blocks {' x '.join(map(str, args.parts))} (top-down), "
          f"{args.degree} mean degree, within-block shares {args.within} (finest first); "
          f"one thread; median partition time and mean agreement over the graphs.\n")
    print('| nodes | edges | builder | partition s | ARI per level (finest first) | '
          'NMI per level | graphs |')
    print('|---|---|---|---|---|---|---|')
    for n, name, seconds, ari, nmi, count in rows:
        print(f"| {n:,} | {n * args.degree // 2:,} | {name} | {seconds:.2f} | "
              f"{' / '.join(f'{a:.3f}' for a in ari)} | "
              f"{' / '.join(f'{a:.3f}' for a in nmi)} | {count} |")


if __name__ == '__main__':
    main()
