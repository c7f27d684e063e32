r"""Hierarchical attention on large graphs, in three tables:

1. ``builders``: how fast each graph hierarchy builder partitions a graph with
   planted nested communities, and how well its levels agree with them.
2. ``step``: one training step (forward, backward, AdamW) of node
   classification with HSA against PyG's SGFormer and Polynormer and GPS
   with Performer attention, at 10^4..10^6 nodes.
3. ``distributed``: exact HSA with the top-level subtrees spread over 2
   processes (gloo) against one process, and the bytes sent.

The graphs are SYNTHETIC (:func:`hsa_geo.datasets.planted_hierarchy_graph`):
``--parts`` blocks per block from the top down (default 16 x 16 x 16: a
4-level hierarchy with the nodes), ``--within`` the share of each node's
edges inside its block at each level (finest first), mean degree
``--degree`` (10^6 nodes: 10^7 edges).

**builders**: every builder is asked for the planted levels (METIS for the
planted block counts, PLM and Louvain for as many levels, the spectral
windows for the planted block sizes).  ``partition s`` is the time of the
cluster labels of every level; ``hierarchy s`` the whole
:class:`~hsa_geo.transforms.GraphHierarchy` transform (partition, coarsened
graphs and the per-family Laplacian position vectors), both medians over
``--seeds`` graphs; the adjusted Rand index (ARI) and normalised mutual
information (NMI) with the planted blocks per level, finest first, are means
over the graphs.  Louvain (networkx) runs only up to ``--louvain-max`` nodes.

**step**: hidden 64, 2 layers, 4 heads (Polynormer 1: see
``examples/ogbn_node.py``), 32 input features, 8 classes, full batch; HSA is
:class:`~hsa_geo.nn.HSAGraphTransformer` (GraphSAGE local layers) over the
PLM hierarchy of the graph (built once, untimed); the models take turns in
every round, median over ``--repeats`` rounds after a warm-up; memory is the
activation memory of a step (tensors saved for backward).  A model whose
activation memory, extrapolated linearly from the size before, would pass
``--max-activation-gb`` is not run at that size (said so in the table);
``--models`` runs some of them alone (e.g. SGFormer at 10^6 nodes, which
does not fit in 24 GB beside the others).

**distributed**: a regular tree of families of 16 over N leaves (heads 4,
d = 16); forward and backward of :func:`hsa_geo.distributed.distributed_hsa`
on 2 ranks (one thread each) against :func:`hsa_geo.hsa` over the whole
tree in one process (one thread), interleaved round by round in rank 0.

Every graph's and every round's numbers go to the result file (``--out``,
JSON); the tables (medians, means, ratios) are computed from it, and
``--report RESULT_JSON --table NAME`` prints one again from the file alone.

Example::

    python benchmarks/bench_large_graphs.py                          # all three
    python benchmarks/bench_large_graphs.py --sections builders --sizes 10000 --seeds 3
    python benchmarks/bench_large_graphs.py --sections step --sizes 1000000 --models sgformer
    python benchmarks/bench_large_graphs.py --report results/bench_large_graphs.json --table step
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time
from functools import partial
from queue import Empty
from typing import Dict, List

from _large_graphs import SECTIONS, STEP_MODELS, caption, report, step_models

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_FLAGS = {'hsa': 'HSA', 'sgformer': 'SGFormer', 'polynormer': 'Polynormer',
               'gps_performer': 'GPS + Performer'}


# ------------------------------------------------------------------ builders
def spectral_branching(num_nodes: int, parts):
    r"""The spectral builder's window sizes (bottom-up) for the planted block
    counts (top-down)."""
    sizes, count = [], 1
    for k in parts:
        count *= k
        sizes.append(max(num_nodes // count, 2))
    sizes = sizes[::-1]
    return [sizes[0]] + [max(round(sizes[i] / sizes[i - 1]), 2) for i in range(1, len(sizes))]


def builders(parts, num_nodes: int, louvain_max: int) -> Dict[str, object]:
    r"""Each builder's :class:`GraphHierarchy` for the planted levels, or
    :obj:`None` where it is not run at this size."""
    from hsa_geo.transforms import GraphHierarchy
    levels = len(parts)
    return {
        'spectral windows': GraphHierarchy(method='spectral',
                                           branching=spectral_branching(num_nodes, parts)),
        'METIS': GraphHierarchy(method='metis', num_parts=tuple(parts)),     # nested k-way
        'PLM': GraphHierarchy(method='plm', num_levels=levels),              # networkit
        'Louvain (networkx)': GraphHierarchy(method='louvain', num_levels=levels)
        if num_nodes <= louvain_max else None,
    }


def builders_section(args, result: dict) -> None:
    r"""Appends one run per graph and builder to ``result['builders']``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from torch_geometric.data import Data
    from tqdm import tqdm

    from hsa_geo.datasets import planted_hierarchy_graph
    from hsa_geo.experiments import save_json
    runs = result.setdefault('builders', [])
    jobs = [(n, seed) for n in args.sizes for seed in range(args.seeds)]
    for n, seed in tqdm(jobs, desc='builders', file=sys.stderr):
        edge_index, planted = planted_hierarchy_graph(n, args.degree, args.parts,
                                                      args.within, seed=seed)
        for name, builder in builders(args.parts, n, args.louvain_max).items():
            if builder is None:
                continue
            start = time.perf_counter()
            labels = builder.levels(edge_index, n)          # every level, finest first
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            builder(Data(edge_index=edge_index, num_nodes=n))
            whole = time.perf_counter() - start
            runs.append({
                'nodes': n, 'edges': edge_index.size(1), 'seed': seed, 'builder': name,
                'partition_s': seconds, 'hierarchy_s': whole,
                'ari': [adjusted_rand_score(p.numpy(), f.numpy())
                        for p, f in zip(planted, labels)],
                'nmi': [normalized_mutual_info_score(p.numpy(), f.numpy())
                        for p, f in zip(planted, labels)]})
        del edge_index, planted
        save_json(result, args.out)


# ---------------------------------------------------------------------- step
def _call(model, args):
    return model(*args)


def step_section(args, result: dict) -> None:
    r"""Appends one row per size and model to ``result['step']`` (every
    round's seconds and the activation bytes, or the extrapolated GB that
    kept it from running) and the untimed setup to ``result['step_setup']``."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Data
    from tqdm import tqdm

    from hsa_geo import Hierarchy
    from hsa_geo.datasets import planted_node_dataset
    from hsa_geo.experiments import save_json
    from hsa_geo.testing import PeakMemory
    from hsa_geo.transforms import GraphHierarchy
    rows, setup = result.setdefault('step', []), result.setdefault('step_setup', [])
    memory_gb = {}                      # model -> (nodes, GB) measured
    for n in tqdm(args.sizes, desc='training steps', file=sys.stderr):
        data = planted_node_dataset(n, args.degree, args.parts, args.within, seed=0)
        start = time.perf_counter()
        tree = GraphHierarchy(method='plm', num_levels=len(args.parts), pos_dim=8)(
            Data(edge_index=data.edge_index, num_nodes=n))
        hierarchy = Hierarchy.from_hetero(tree)
        setup.append({'nodes': n, 'edges': data.edge_index.size(1),
                      'setup_s': time.perf_counter() - start,
                      'widest_family': hierarchy.max_branching})
        pos, batch = tree.hsa_pos_dict, torch.zeros(n, dtype=torch.long)
        torch.manual_seed(0)
        models = step_models()
        x, edge_index = data.x, data.edge_index
        inputs = {'HSA': (x, edge_index, hierarchy, pos), 'SGFormer': (x, edge_index, batch),
                  'Polynormer': (x, edge_index, batch), 'GPS + Performer': (x, edge_index)}
        calls = {name: partial(_call, args=given) for name, given in inputs.items()}
        mask, target = data.train_mask, data.y[data.train_mask]
        steps, skipped, activation = {}, {}, {}
        chosen = [name for name in STEP_MODELS if name in args.step_models]
        for name in chosen:
            if name in memory_gb:          # linear in the nodes from where it was measured
                measured_at, gb = memory_gb[name]
                guess = gb * n / measured_at
                if guess > args.max_activation_gb:
                    skipped[name] = guess
                    continue
            model, call = models[name], calls[name]
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step(model=model, call=call, optimizer=optimizer, mask=mask, target=target):
                optimizer.zero_grad()
                loss = F.cross_entropy(call(model)[mask], target)
                loss.backward()
                optimizer.step()
            with PeakMemory('cpu') as memory:   # the warm-up step, measured
                step()
            activation[name] = int(memory.peak)
            memory_gb[name] = (n, memory.peak / 2**30)
            steps[name] = step
        times = _interleaved(steps, args.repeats)
        for name in chosen:
            if name in skipped:
                rows.append({'nodes': n, 'model': name, 'predicted_gb': skipped[name]})
            else:
                rows.append({'nodes': n, 'model': name, 'times': times[name],
                             'activation_bytes': activation[name]})
        del data, tree, hierarchy, models, steps
        save_json(result, args.out)


def _interleaved(steps: Dict[str, object], repeats: int) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------- distributed
HEADS, DIM = 4, 16


def _tree(num_leaves: int):
    r"""Regular tree with families of 16 and at least 2 top-level subtrees,
    as a forest of its top-level subtrees and the whole tree."""

    from hsa_geo import Hierarchy
    from hsa_geo.testing import regular_tree
    levels, width = [], 1
    while width * 16 * 2 <= num_leaves:
        levels.append(16)
        width *= 16
    parent, n = regular_tree(num_leaves, levels)           # one root above the levels
    forest = parent.clone()
    forest[forest == parent.numel() - 1] = -1                # its children: top level
    return Hierarchy.from_parent(forest[:-1], n), Hierarchy.from_parent(parent, n)


def _distributed_worker(rank: int, world: int, sizes: List[int], repeats: int, port: int,
                        queue) -> None:
    import torch
    import torch.distributed as dist

    from hsa_geo import hsa
    from hsa_geo.distributed import communicated_bytes, distributed_hsa, shard_forest
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    for n in sizes:
        forest, whole = _tree(n)
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(n, HEADS, DIM, generator=gen) for _ in range(3))
        local, leaf_ids, _ = shard_forest(forest, world)[rank]
        mine = [t[leaf_ids].clone().requires_grad_() for t in (q, k, v)]
        full = [t.clone().requires_grad_() for t in (q, k, v)]

        def sharded(mine=mine, local=local):
            out = distributed_hsa(*mine, local)
            out.sum().backward()

        def single(full=full, whole=whole):
            out = hsa(*full, whole)
            out.sum().backward()
        sharded()                                            # warm-up
        if rank == 0:
            single()
        times = {'sharded': [], 'single': []}
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            sharded()
            dist.barrier()
            times['sharded'].append(time.perf_counter() - start)
            if rank == 0:                                    # the others wait
                start = time.perf_counter()
                single()
                times['single'].append(time.perf_counter() - start)
            dist.barrier()
        if rank == 0:
            top = forest.num_roots
            queue.put({'leaves': n, 'top_level': top, 'heads': HEADS, 'dim': DIM,
                       'single_times': times['single'], 'sharded_times': times['sharded'],
                       'bytes_per_layer': communicated_bytes(top, HEADS, DIM, DIM)})
    dist.destroy_process_group()


def distributed_section(args, result: dict) -> None:
    r"""Appends one row per size to ``result['distributed']``: every round's
    seconds of one process and of the 2 ranks (rank 0's clock)."""
    import torch.multiprocessing as mp

    from hsa_geo.experiments import save_json
    context = mp.get_context('spawn')
    queue = context.Queue()
    processes = [context.Process(target=_distributed_worker,
                                 args=(rank, 2, args.sizes, args.repeats, args.port, queue))
                 for rank in range(2)]
    for p in processes:
        p.start()
    rows = result.setdefault('distributed', [])
    while len(rows) < len(args.sizes):
        try:
            rows.append(queue.get(timeout=10))
            save_json(result, args.out)
        except Empty:          # a worker that died leaves the other at a barrier
            if any(p.exitcode for p in processes):
                for p in processes:
                    p.terminate()
                raise SystemExit('a distributed worker failed (exit codes '
                                 f'{[p.exitcode for p in processes]})') from None
    for p in processes:
        p.join()


# ---------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument('--sizes', type=int, nargs='+', default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--parts', type=int, nargs='+', default=[16, 16, 16],
                        help='planted blocks per block, top-down')
    parser.add_argument('--within', type=float, nargs='+', default=[0.6, 0.2, 0.1],
                        help='share of edges inside the block at each level, finest first')
    parser.add_argument('--degree', type=int, default=20, help='mean degree')
    parser.add_argument('--seeds', type=int, default=3, help='graphs per size (builders)')
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (step, distributed)')
    parser.add_argument('--louvain-max', type=int, default=20_000)
    parser.add_argument('--models', nargs='+', default=list(MODEL_FLAGS), choices=MODEL_FLAGS,
                        help='models of the step section (one alone: what memory allows)')
    parser.add_argument('--max-activation-gb', type=float, default=12.0,
                        help='skip a step model whose activations would pass this')
    parser.add_argument('--port', type=int, default=29533, help='gloo port (distributed)')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the CPU only: one thread per process)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_large_graphs.json'),
                        help='the result file: every graph and round (JSON)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print a table of this result file')
    parser.add_argument('--table', choices=SECTIONS, default=None,
                        help='with --report: which table (needed where the file holds several)')
    args = parser.parse_args(argv)
    from hsa_geo.experiments import load_result, provenance, save_json
    if args.report:
        try:
            print(report(load_result(args.report), args.report, args.table))
        except ValueError as error:
            parser.error(str(error))
        return
    args.step_models = [MODEL_FLAGS[flag] for flag in args.models]
    import torch
    torch.set_num_threads(1)
    sections = {'builders': builders_section, 'step': step_section,
                'distributed': distributed_section}
    result = {'args': vars(args)}
    for name in args.sections:
        sections[name](args, result)
    result['provenance'] = provenance(args.device)
    save_json(result, args.out)
    for name in args.sections:
        print('\n' + caption(result, name) + '\n\n' + report(result, args.out, name) + '\n',
              flush=True)


if __name__ == '__main__':
    main()
