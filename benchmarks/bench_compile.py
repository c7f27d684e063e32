r"""torch.compile over a real DataLoader: compilations and time per training
step, compiled against eager, in one process, interleaved.

Every batch of a DataLoader has its own forest (other sizes, other depths,
other family widths).  Traced naively, every one of them would compile
again; HSA runs under compilation as one custom operator whose output shape
follows from its input shapes, so one graph with symbolic sizes serves them
all.  Workloads (from the project's own data and builders):

* **molecules**: FreeSolv junction trees (:class:`MoleculeHierarchy`) in
  shuffled batches, :class:`HTEPredictor` (2 layers, 64 wide, 4 heads);
* **points**: octrees (``VoxelHierarchy(4)``) of clouds of 50-150 surface
  samples of the shipped meshes, :class:`HSAPointTransformer` (2 blocks);
* **gps-flat**: FreeSolv molecular graphs, 3 ``HSAGPSConv`` layers without a
  hierarchy (one flat family per molecule, built inside the layer) against
  PyG's ``GPSConv`` (``attn_type='multihead'``) on the same batches.

For each model: compilations over ``--batches`` batches (a counting
``torch.compile`` backend around inductor, ``dynamic=True``), the seconds the
first pass spends compiling (compiled first pass minus an eager pass), and the
median training step (forward, backward, Adam) eager and compiled over
``--rounds`` passes, eager and compiled alternating batch by batch.  One
thread by default (on a shared 2-core machine two threads can run 10x slower).

Every step's time goes to the result file (``--out``); the table (medians,
compile seconds and ratios) is computed from it, and ``--report RESULT_JSON``
prints it again from the file alone.

Example::

    python benchmarks/bench_compile.py
    python benchmarks/bench_compile.py --workloads molecules --batches 10 --rounds 2
    python benchmarks/bench_compile.py --report results/bench_compile.json
"""
from __future__ import annotations

import argparse
import copy
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

from hsa_geo.experiments import load_result, provenance, provenance_note, save_json

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORKLOADS = ('molecules', 'points', 'gps-flat')
# how the table names the workloads (with their batch size) and the models
WORKLOAD_LABELS = {'molecules': 'FreeSolv junction trees, batch {batch}',
                   'points': 'octrees of 50-150-point clouds, batch {batch}',
                   'gps-flat': 'FreeSolv graphs, batch {batch}'}
MODEL_LABELS = {'HTEPredictor': 'HTEPredictor (2 layers, 64 wide)',
                'HSAPointTransformer': 'HSAPointTransformer (2 blocks)',
                'HSAGPSConv (flat)': '3 x HSAGPSConv, no hierarchy',
                'GPSConv (multihead)': '3 x PyG GPSConv (multihead)'}
BATCH_SIZES = {'molecules': 32, 'points': 8, 'gps-flat': 32}


def batches_of(samples: list, batch_size: int, count: int, loader) -> list:
    torch.manual_seed(0)
    out: List[object] = []
    while len(out) < count:
        out.extend(loader(samples, batch_size=batch_size, shuffle=True))
    return out[:count]


def models(name: str, args):
    r"""``{label: (model, step inputs from a batch)}`` for one workload."""
    from torch_geometric.nn import GINConv, GPSConv, global_mean_pool

    from hsa_geo.nn import HSAGPSConv, HSAPointTransformer, HTEPredictor
    torch.manual_seed(0)
    if name == 'molecules':
        model = HTEPredictor(9, 64, 1, heads=4, num_layers=2)
        return {'HTEPredictor': (model, lambda m, b: m(b['atom'].x.float(), b.hierarchy))}
    if name == 'points':
        model = HSAPointTransformer(0, 64, 3, num_layers=2, heads=4)
        return {'HSAPointTransformer': (
            model, lambda m, b: m(None, b['point'].pos, b.hierarchy, b.hsa_pos_dict))}

    class GPS(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.embed = torch.nn.Linear(9, 64)
            self.layers = torch.nn.ModuleList([
                layer(64, GINConv(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                                      torch.nn.Linear(64, 64))), heads=4)
                for _ in range(3)])
            self.head = torch.nn.Linear(64, 1)

        def forward(self, x, edge_index, batch, size):
            x = self.embed(x)
            for layer in self.layers:
                x = layer(x, edge_index, batch)
            return self.head(global_mean_pool(x, batch, size=size))

    def inputs(m, b):
        atoms = b['atom']
        return m(atoms.x.float(), b['atom', 'bond', 'atom'].edge_index, atoms.batch,
                 b.num_graphs)
    return {'HSAGPSConv (flat)': (GPS(HSAGPSConv), inputs),
            'GPSConv (multihead)': (GPS(GPSConv), inputs)}


def train_step(model, optimizer, run: Callable, batch) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    run(model, batch).square().mean().backward()
    optimizer.step()
    return time.perf_counter() - start


def measure(name: str, args) -> List[dict]:
    r"""One row per model of the workload, with every step's seconds."""
    from tqdm import tqdm

    from hsa_geo.loader import HierarchyLoader
    from hsa_geo.testing import CompileCounter

    from _workloads import molecule_samples, point_samples
    batch_size = BATCH_SIZES[name]
    if name == 'points':
        samples = point_samples(args.batches * 4, points=100, depth=4, vary=True)
    else:
        samples = molecule_samples(400)
    batches = batches_of(samples, batch_size, args.batches, HierarchyLoader)
    shapes = len({(b.hierarchy.num_nodes, b.hierarchy.num_levels) for b in batches})
    rows = []
    for label, (model, run) in models(name, args).items():
        torch._dynamo.reset()
        backend = CompileCounter()
        eager = model
        compiled_model = copy.deepcopy(model)
        compiled = torch.compile(compiled_model, backend=backend, dynamic=True)
        opt_eager = torch.optim.Adam(eager.parameters(), lr=1e-3)
        opt_compiled = torch.optim.Adam(compiled_model.parameters(), lr=1e-3)
        first_eager = [train_step(eager, opt_eager, run, b) for b in batches]
        first_compiled = [train_step(compiled, opt_compiled, run, b) for b in batches]
        times: Dict[str, List[float]] = {'eager': [], 'compiled': []}
        for _ in tqdm(range(args.rounds), desc=label, file=sys.stderr, leave=False):
            for batch in batches:
                times['eager'].append(train_step(eager, opt_eager, run, batch))
                times['compiled'].append(train_step(compiled, opt_compiled, run, batch))
        rows.append(dict(workload=name, model=label, batch_size=batch_size,
                         batches=len(batches), shapes=shapes, compilations=backend.count,
                         first_eager_times=first_eager, first_compiled_times=first_compiled,
                         eager_times=times['eager'], compiled_times=times['compiled']))
    return rows


# ------------------------------------------------------------------ report
def table(result: dict) -> str:
    r"""The table of a result file: compile s = the first compiled pass
    minus the first eager pass; medians of the timed steps and their ratio."""
    lines = ['| workload | model | batch shapes | compilations | compile s | '
             'eager ms / step | compiled ms / step | eager / compiled |',
             '|---|---|---|---|---|---|---|---|']
    for r in result['runs']:
        compile_s = sum(r['first_compiled_times']) - sum(r['first_eager_times'])
        eager = 1e3 * statistics.median(r['eager_times'])
        compiled = 1e3 * statistics.median(r['compiled_times'])
        workload = WORKLOAD_LABELS[r['workload']].format(batch=r['batch_size'])
        lines.append(f"| {workload} | {MODEL_LABELS[r['model']]} | {r['shapes']} | "
                     f"{r['compilations']} | {compile_s:.1f} | {eager:.1f} | {compiled:.1f} | "
                     f'{eager / compiled:.2f} |')
    return '\n'.join(lines)


def report(result: dict, path: str) -> str:
    r"""The table of a result file, and the line saying where it comes from."""
    return table(result) + '\n\n' + provenance_note(result, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workloads', nargs='+', default=list(WORKLOADS), choices=WORKLOADS,
                        help='(default: all)')
    parser.add_argument('--batches', type=int, default=20,
                        help='batches per pass, each of its own shape (default: 20)')
    parser.add_argument('--rounds', type=int, default=3,
                        help='timed passes over the batches (default: 3)')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads (default: 1)')
    parser.add_argument('--device', choices=['cpu'], default='cpu',
                        help='where it runs (the CPU only)')
    parser.add_argument('--out', default=osp.join(ROOT, 'results', 'bench_compile.json'),
                        help='the result file, every step (default: results/bench_compile.json)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print the table of this result file')
    args = parser.parse_args(argv)
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report))
        return result
    torch.set_num_threads(args.threads)
    result = {'args': vars(args), 'runs': []}
    for name in args.workloads:
        result['runs'].extend(measure(name, args))
        save_json(result, args.out)  # an interrupted run keeps what it measured
    result['provenance'] = provenance(args.device)
    save_json(result, args.out)
    print(f'\ntorch.compile(dynamic=True), {args.batches} batches, {args.rounds} timed passes, '
          f'{args.threads} thread(s), median training step\n')
    print(report(result, args.out))
    return result


if __name__ == '__main__':
    main()
