r"""HSA on the batches people train on, against dense attention over the same
padded batch, in one process, interleaved.

Workloads, built from the project's own data and builders:

* **molecules**: 32 FreeSolv molecules (the shipped MoleculeNet file through
  :func:`ogb.utils.smiles2graph`) through :class:`MoleculeHierarchy`
  (atoms -> junction-tree clusters -> molecule);
* **points**: 32 clouds of 100 surface samples of the shipped meshes
  (airplane, ant, nut, in turn) through ``VoxelHierarchy(4)``;
* **news**: 32 news articles (the shipped corpus, about 700 regex tokens each)
  through :class:`TextHierarchy` (tokens -> words -> sentences -> paragraphs ->
  document);
* **minilm-128 / minilm-512**: the offline all-MiniLM-L6-v2, every layer on
  HSA over windows (2, 4, 8, 16), a batch of news articles cut to 128 / 512
  tokens; the whole model against the original (SDPA) model, forward only.

For the three batches: HSA forward and forward+backward (heads 4, d 32,
float32) against ``scaled_dot_product_attention`` over the padded batch
``[B, H, L_max, d]`` with its key-padding mask; ``Hierarchy`` compilation
(``from_hetero`` of the collated batch) against one training step; aten
operators per call (``torch.profiler``: calls made from Python, and all
calls).  Then the bandwidth floor at 10^6 leaves (a regular tree of branching
16), the ragged / regular time per leaf at every N, and the peak memory of
forward+backward at 10^6 leaves over its inputs (each engine path in a fresh
process; Linux's peak resident set, reset once the inputs exist).

Times are medians of ``--repeats`` rounds; in each round every competitor runs
once, in turn, so they share the machine's load.  One thread by default (on a
shared 2-core machine, two threads can run 10x slower than one).

Every round's time goes to the result file (``--out``); the tables (medians,
ratios, the targets met) are computed from it, and ``--report RESULT_JSON
--table NAME`` prints one again from the file alone: ``batches`` (the three
batches), ``targets`` (the engine's performance targets) or ``details`` (the
model step, the fused kernels against the PyTorch path, the floor, the memory,
ragged / regular per N, MiniLM).

Example::

    python benchmarks/bench_workloads.py
    python benchmarks/bench_workloads.py --workloads molecules news --repeats 30
    python benchmarks/bench_workloads.py --report results/bench_workloads.json --table targets
"""
from __future__ import annotations

import argparse
import functools
import json
import os.path as osp
import sys
import time
from typing import Callable, Dict, List

import torch

from hsa_geo.experiments import load_result, provenance, save_json

from _workload_tables import TABLES, report
from _workloads import (
    attention_batch,
    dense_step,
    hsa_step,
    molecule_batch,
    news_batch,
    news_texts,
    op_counts,
    point_batch,
    pytorch_path,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORKLOADS = ('molecules', 'points', 'news', 'minilm-128', 'minilm-512', 'floor', 'ragged',
             'memory')


def rounds(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    r"""The seconds of every call of each function: one warm-up call of each,
    then :obj:`repeats` rounds in which each runs once, in turn."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def model_step(batch, hidden: int = 64, layers: int = 3, heads: int = 4):
    r"""One training step (forward, backward, Adam) of the main job's HSA model
    on a molecule batch: atom embedding, ``layers`` HSAGPSConv blocks (GINE
    local layer, HSA over the junction tree with its positions), mean
    pooling, a linear head; the hierarchy compiled inside the step, as a
    DataLoader loop does."""
    from torch_geometric.nn import GINEConv, global_mean_pool

    from hsa_geo import Hierarchy
    from hsa_geo.nn import HSAGPSConv
    torch.manual_seed(0)
    embed = torch.nn.Linear(batch['atom'].x.size(1), hidden)
    bond = torch.nn.Linear(batch['atom', 'bond', 'atom'].edge_attr.size(1), hidden)
    convs = torch.nn.ModuleList([
        HSAGPSConv(hidden, GINEConv(torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))),
            heads=heads, attn_kwargs=dict(pos_channels=batch['atom'].hsa_pos.size(1)))
        for _ in range(layers)])
    head = torch.nn.Linear(hidden, 1)
    modules = torch.nn.ModuleList([embed, bond, convs, head])
    optimizer = torch.optim.Adam(modules.parameters(), lr=1e-3)
    atoms, bonds = batch['atom'], batch['atom', 'bond', 'atom']

    def step():
        hierarchy = Hierarchy.from_hetero(batch)
        x = embed(atoms.x.float())
        edge_attr = bond(bonds.edge_attr.float())
        for conv in convs:
            x = conv(x, bonds.edge_index, atoms.batch, hierarchy=hierarchy,
                     pos=batch.hsa_pos_dict, edge_attr=edge_attr)
        loss = head(global_mean_pool(x, atoms.batch)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def compile_batch(batch):
    r"""What a batch's HSA needs compiled: ``Hierarchy.from_hetero`` and the
    form of the forest the engine will run on (the families of the fused CPU
    kernels with numba, else the padded layout), both built lazily."""
    from hsa_geo import Hierarchy
    from hsa_geo.engine import numba_kernels
    hierarchy = Hierarchy.from_hetero(batch)
    if numba_kernels.usable(torch.device('cpu'), torch.float32):
        _ = hierarchy.forest.families
    else:
        _ = hierarchy.layout
    return hierarchy


def measure_batch(name: str, batch, args) -> dict:
    hierarchy, (q, k, v), graph, mask = attention_batch(batch, args.heads, args.dim)
    extra = {'model_step': model_step(batch)} if name == 'molecules' else {}
    times = rounds({
        'hsa_fwd': lambda: hsa_step(hierarchy, q, k, v, False),
        'dense_fwd': lambda: dense_step(q, k, v, graph, mask, False),
        'hsa_fwd_bwd': lambda: hsa_step(hierarchy, q, k, v, True),
        'dense_fwd_bwd': lambda: dense_step(q, k, v, graph, mask, True),
        'pytorch_fwd_bwd': pytorch_path(lambda: hsa_step(hierarchy, q, k, v, True)),
        'compile': lambda: compile_batch(batch),
        **extra,
    }, args.repeats)
    forward = op_counts(lambda: hsa_step(hierarchy, q, k, v, False))
    args_grad = [t.detach().requires_grad_() for t in (q, k, v)]
    from hsa_geo import hsa
    out = hsa(*args_grad, hierarchy).sum()
    backward = op_counts(lambda: out.backward())
    compile_ops = op_counts(lambda: compile_batch(batch))
    classes = sum(len(level) for level in compile_batch(batch).layout.levels)
    return dict(workload=name, leaves=hierarchy.num_leaves, trees=hierarchy.num_roots,
                max_len=int(mask.size(1)), levels=hierarchy.num_levels, classes=classes,
                depth=hierarchy.depth, fwd_ops=forward, bwd_ops=backward,
                compile_ops=compile_ops, times=times)


def measure_minilm(length: int, args) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from hsa_geo.datasets import minilm_dir
    from hsa_geo.zero_shot import inject
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    original = AutoModel.from_pretrained(minilm_dir()).eval()
    injected = AutoModel.from_pretrained(minilm_dir()).eval()
    inject(injected, hierarchy=(2, 4, 8, 16))
    enc = tokenizer(news_texts(args.minilm_batch), truncation=True, max_length=length,
                    padding='max_length', return_tensors='pt')

    def run(model):
        with torch.no_grad():
            return model(**enc)

    times = rounds({'original': lambda: run(original), 'injected': lambda: run(injected)},
                   max(3, args.repeats // 4))
    return dict(workload=f'minilm-{length}', batch=args.minilm_batch, length=length,
                times=times)


def measure_floor(args) -> dict:
    r"""HSA forward at 10^6 leaves (regular, b = 16) against the time to read
    q, k, v and write an output once: into a preallocated output, and into a
    fresh one (first-touch page faults included, as HSA's own output pays)."""
    from hsa_geo import Hierarchy
    from hsa_geo.testing import regular_tree
    n = args.floor_leaves
    q, k, v = (torch.randn(n, args.heads, args.dim) for _ in range(3))
    hierarchy = Hierarchy.from_parent(*regular_tree(n, (16, ) * 8))
    out = torch.empty_like(q)

    def reused():
        torch.addcmul(q, k, v, out=out)

    def fresh():
        torch.addcmul(q, k, v)

    times = rounds({'hsa_fwd': lambda: hsa_step(hierarchy, q, k, v, False),
                    'floor_reused': reused, 'floor_fresh': fresh}, max(3, args.repeats // 10))
    return dict(workload='floor', leaves=n, times=times)


def measure_ragged(args) -> List[dict]:
    from hsa_geo import Hierarchy
    from hsa_geo.testing import random_ragged_tree, regular_tree
    out = []
    for n in args.ragged_sizes:
        q, k, v = (torch.randn(n, args.heads, args.dim) for _ in range(3))
        regular = Hierarchy.from_parent(*regular_tree(n, (16, ) * 8))
        ragged = Hierarchy.from_parent(*random_ragged_tree(n, 2, 32, seed=0))
        times = rounds({'regular': functools.partial(hsa_step, regular, q, k, v, False),
                        'ragged': functools.partial(hsa_step, ragged, q, k, v, False)},
                       max(3, args.repeats // 4))
        out.append(dict(workload='ragged', leaves=n, times=times))
    return out


PATHS = {'fused': '1', 'pytorch': '0'}  # HSA_GEO_CPU_KERNELS for each engine path


def memory_child(path: str, leaves: int, heads: int, dim: int, threads: int) -> dict:
    r"""In a fresh process: the peak resident memory of HSA forward+backward
    at :obj:`leaves` leaves (regular, b = 16) above what exists once the
    hierarchy, q, k, v and the output's gradient do, on one engine path."""
    import os
    os.environ['HSA_GEO_CPU_KERNELS'] = PATHS[path]
    torch.set_num_threads(threads)
    from hsa_geo import Hierarchy, hsa
    from hsa_geo.testing import regular_tree
    small = Hierarchy.from_parent(*regular_tree(256, (16, 16)))
    x = torch.randn(256, heads, dim, requires_grad=True)
    hsa(x, x, x, small).sum().backward()     # compile (or load) the kernels first
    hierarchy = Hierarchy.from_parent(*regular_tree(leaves, (16, ) * 8))
    _ = hierarchy.forest.families if path == 'fused' else hierarchy.layout
    q, k, v = (torch.randn(leaves, heads, dim, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(leaves, heads, dim)

    def status(field: str) -> int:
        with open('/proc/self/status') as f:
            line = next(line for line in f if line.startswith(field))
        return int(line.split()[1]) * 1024

    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')                           # the peak restarts from here
    base = status('VmRSS:')
    hsa(q, k, v, hierarchy).backward(grad_out)
    return dict(path=path, peak_over_inputs=status('VmHWM:') - base,
                input_bytes=4 * q.numel() * q.element_size())


def measure_memory(args) -> dict:
    import subprocess
    out = dict(workload='memory', leaves=args.floor_leaves)
    for path in PATHS:
        child = subprocess.run(
            [sys.executable, __file__, '--memory-child', path, '--floor-leaves',
             str(args.floor_leaves), '--heads', str(args.heads), '--dim', str(args.dim),
             '--threads', str(args.threads)], capture_output=True, text=True, check=True)
        found = json.loads(child.stdout.strip().splitlines()[-1])
        out[f'{path}_peak'] = found['peak_over_inputs']
        out['input_bytes'] = found['input_bytes']
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workloads', nargs='+', default=list(WORKLOADS), choices=WORKLOADS,
                        help='(default: all)')
    parser.add_argument('--batch', type=int, default=32, help='samples per batch (default: 32)')
    parser.add_argument('--heads', type=int, default=4, help='(default: 4)')
    parser.add_argument('--dim', type=int, default=32, help='channels per head (default: 32)')
    parser.add_argument('--repeats', type=int, default=40,
                        help='timed rounds for the batches; fewer for the large sizes '
                             '(default: 40)')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads (default: 1)')
    parser.add_argument('--minilm-batch', type=int, default=8,
                        help='sequences per MiniLM batch (default: 8)')
    parser.add_argument('--floor-leaves', type=int, default=1 << 20,
                        help='leaves of the bandwidth-floor run (default: 1,048,576)')
    parser.add_argument('--ragged-sizes', type=int, nargs='+',
                        default=[1024, 4096, 16384, 65536, 262144],
                        help='N of the ragged / regular comparison')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the CPU only; cuda_check.py is the GPU check)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_workloads.json'),
                        help='the result file: every round (default: '
                             'results/bench_workloads.json)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print a table of this result file')
    parser.add_argument('--table', choices=TABLES,
                        help='with --report: which table (the file holds several)')
    parser.add_argument('--memory-child', choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report:
        if args.table is None:
            parser.error(f"the file holds several tables: name one with --table "
                         f"({', '.join(TABLES)})")
        print(report(load_result(args.report), args.report, args.table))
        return
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.floor_leaves, args.heads,
                                      args.dim, args.threads)))
        return
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    builders = {'molecules': molecule_batch, 'points': point_batch, 'news': news_batch}
    result = {'args': vars(args), 'results': []}
    results: List[dict] = result['results']
    for name in tqdm(args.workloads, desc='workloads', file=sys.stderr):
        if name in builders:
            results.append(measure_batch(name, builders[name](args.batch), args))
        elif name.startswith('minilm'):
            results.append(measure_minilm(int(name.split('-')[1]), args))
        elif name == 'floor':
            results.append(measure_floor(args))
        elif name == 'memory':
            results.append(measure_memory(args))
        else:
            results.extend(measure_ragged(args))
        save_json(result, args.out)  # an interrupted run keeps what it measured

    result['provenance'] = provenance(args.device)
    save_json(result, args.out)
    print(f'\nHSA vs dense SDPA over the padded batch; heads={args.heads}, d={args.dim}, '
          f'float32, {args.threads} thread(s), medians of interleaved rounds')
    for table in TABLES:
        print('\n' + report(result, args.out, table))


if __name__ == '__main__':
    main()
