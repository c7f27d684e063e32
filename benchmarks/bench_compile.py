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

Example::

    python benchmarks/bench_compile.py
    python benchmarks/bench_compile.py --workloads molecules --batches 10 --rounds 2
"""
from __future__ import annotations

import argparse
import copy
import json
import pathlib
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

from hsa_geo.testing import CompileCounter

from _workloads import molecule_samples, point_samples

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKLOADS = ('molecules', 'points', 'gps-flat')


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
    from tqdm import tqdm

    from hsa_geo.loader import HierarchyLoader
    if name == 'points':
        samples = point_samples(args.batches * 4, points=100, depth=4, vary=True)
        batches = batches_of(samples, 8, args.batches, HierarchyLoader)
    else:
        samples = molecule_samples(400)
        batches = batches_of(samples, 32, args.batches, HierarchyLoader)
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
        first_eager = sum(train_step(eager, opt_eager, run, b) for b in batches)
        first_compiled = sum(train_step(compiled, opt_compiled, run, b) for b in batches)
        times: Dict[str, List[float]] = {'eager': [], 'compiled': []}
        for _ in tqdm(range(args.rounds), desc=label, file=sys.stderr, leave=False):
            for batch in batches:
                times['eager'].append(train_step(eager, opt_eager, run, batch))
                times['compiled'].append(train_step(compiled, opt_compiled, run, batch))
        eager_ms = 1e3 * statistics.median(times['eager'])
        compiled_ms = 1e3 * statistics.median(times['compiled'])
        rows.append(dict(workload=name, model=label, batches=len(batches), shapes=shapes,
                         compilations=backend.count,
                         compile_s=first_compiled - first_eager,
                         eager_ms=eager_ms, compiled_ms=compiled_ms,
                         speedup=eager_ms / compiled_ms))
    return rows


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workloads', nargs='+', default=list(WORKLOADS), choices=WORKLOADS,
                        help='(default: all)')
    parser.add_argument('--batches', type=int, default=20,
                        help='batches per pass, each of its own shape (default: 20)')
    parser.add_argument('--rounds', type=int, default=3,
                        help='timed passes over the batches (default: 3)')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads (default: 1)')
    parser.add_argument('--out', type=pathlib.Path,
                        default=ROOT / 'results' / 'bench_compile.json',
                        help='JSON with every measurement (default: results/bench_compile.json)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: List[dict] = []
    for name in args.workloads:
        rows.extend(measure(name, args))
    print(f'\ntorch.compile(dynamic=True), {args.batches} batches, {args.rounds} timed passes, '
          f'{args.threads} thread(s), median training step')
    print('\n| workload | model | batch shapes | compilations | compile s | eager ms | '
          'compiled ms | eager / compiled |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['workload']} | {r['model']} | {r['shapes']} | {r['compilations']} | "
              f"{r['compile_s']:.1f} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | "
              f"{r['speedup']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f'\nwrote {args.out}')
    return rows


if __name__ == '__main__':
    main()
