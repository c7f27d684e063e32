r"""Scaling of HSA on point clouds against kNN and dense attention.

Points are surface samples of a real mesh (``hsa_geo/datasets/data/airplane.ply``, drawn
with ``trimesh.sample.sample_surface``) at N = 10^4, 10^5, 10^6 points.  The
features are ``[xyz, normal of the sampled face]`` (xyz centred and scaled to
a unit bounding box) mapped to ``--channels`` by a fixed random Linear layer in
the untimed setup: the geometry is real, the feature values only matter for
cost.  Three attention layers sit in the same pre-norm transformer block,
``h = x + Attn(LN(x))``, ``out = h + FFN(LN(h))`` (FFN: Linear(C, 2C), GELU,
Linear(2C, C)), so only the attention differs:

* HSA: ``hsa_geo.nn.HSAEncoderLayer(C, C, heads, style='prenorm',
  pos_channels=3)`` over the octree ``VoxelHierarchy(depth=auto_depth(N, 2))``
  (surface samples fill about two dimensions, so this leaves about 8 points
  per finest voxel; ``--depth-dim 3`` sizes it as if they filled a volume),
  compiled once with ``Hierarchy.from_hetero``; its relative-centroid
  ``hsa_pos`` vectors (every node type) are the position input.  Every point
  receives from every other point, through the tree.
* PointTransformerConv: PyG's ``PointTransformerConv(C, C)`` with the
  ``pos_nn = MLP([3, 64, C])`` and ``attn_nn = MLP([C, 64, C])`` (ReLU, no
  norm) of PyG's ``examples/point_transformer_classification.py``, over a
  ``--k`` nearest-neighbour graph (the conv adds self loops: N (k + 1)
  edges).  It is vector attention (one weight per channel), so ``--heads``
  does not apply.  The graph comes from ``hsa_geo.utils.knn_graph``:
  exact up to ``--exact-knn-max`` points, the approximate Morton-order graph
  beyond (the conv's cost depends only on its N (k + 1) edges; the table says
  which graph was used).
* dense: multi-head softmax attention over all N points,
  ``torch.nn.functional.scaled_dot_product_attention`` on ``[1, heads, N,
  C / heads]`` (q/k/v and output projections), up to ``--dense-max`` points.

For every (layer, N), in a fresh process (this script re-invoked with a
hidden ``--worker`` flag, returning one JSON line), after building the inputs:

* time: the wall time of each of ``--repeats`` forwards (``torch.no_grad``,
  ``model.eval()``) and of ``--repeats`` forward+backward passes (loss = the
  output's sum, gradients for all parameters), the table gives the medians;
  the memory runs below are the warm-up.  A configuration predicted above
  10 s per forward+backward runs ``--slow-repeats`` (default 2) repeats
  instead (the result file holds every run).
* memory: the peak resident-set growth over the RSS after the inputs were
  built, of one forward and (separately) of one forward+backward.  The RSS
  high-water mark (``VmHWM``, what ``ru_maxrss`` reports) is reset through
  ``/proc/self/clear_refs`` before each, so the setup's own peak (kNN chunks,
  octree) does not hide the layer's; where the reset is not possible the
  worker falls back to ``ru_maxrss`` and the result file says so.  On CUDA:
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, over
  the allocation after setup.
* untimed setup costs: sampling, octree build (``VoxelHierarchy``), compile
  (``Hierarchy.from_hetero``) and kNN build seconds (the octree is built and
  compiled on the CPU, as a ``pre_transform`` would, then moved; the kNN graph
  is built on ``--device``).

Safety (a 24 GB machine without swap is assumed shared): before starting a
configuration, its fwd+bwd time and whole-process peak memory are
extrapolated from the two largest smaller sizes measured for the same layer
(the measured growth exponent, at least linear; for dense time at least
quadratic, and quadratic memory until two sizes are measured); above
``--max-seconds`` or ``--max-memory-gb`` it is skipped, with the prediction
in the table.  A running worker is killed when its RSS exceeds 1.5x
``--max-memory-gb`` or the machine's available memory drops below 1 GiB.

The workers (``_points.py``) measure; every run's time and the memory
numbers go to the result file (``--out``, JSON), from which the tables
(medians and ratios) are computed: ``--report RESULT_JSON`` prints one again
from the file alone (``--table setup``: the untimed setup costs; ``--plot
PNG``: the plot, in either mode).

Example::

    OMP_NUM_THREADS=2 python benchmarks/bench_points.py          # 10^4 .. 10^6
    python benchmarks/bench_points.py --sizes 2000 10000 --repeats 3 --out /tmp/p.json
    python benchmarks/bench_points.py --report results/bench_points.json --plot p.png
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from _points import MESH, RESULT_TAG, proc_bytes, worker_main

ROOT = pathlib.Path(__file__).resolve().parents[1]

DEFAULT_SIZES = [10_000, 100_000, 1_000_000]
LAYERS = ['hsa', 'point_transformer', 'dense']
TABLES = ('scaling', 'setup')
# growth exponents for extrapolating to a larger N: time (the lower bound on
# the measured exponent, also assumed from a single size) and memory (the
# exponent assumed from a single size; the measured one is bounded below by 1)
TIME_EXPONENT = {'hsa': 1.0, 'point_transformer': 1.0, 'dense': 2.0}
MEMORY_EXPONENT_SINGLE = {'hsa': 1.0, 'point_transformer': 1.0, 'dense': 2.0}
SLOW_SECONDS = 10.0          # predicted fwd+bwd above this: --slow-repeats
MIN_AVAILABLE = 1 << 30      # kill a worker when the machine has less left


# ----------------------------------------------------------------- the parent
def _run_worker(job: dict, kill_bytes: float, timeout: float) -> dict:
    r"""Runs one configuration in a fresh interpreter, watching its memory."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()),
                                 '--worker', json.dumps(job)], stdout=out, stderr=err,
                                text=True)
        start, reason = time.monotonic(), None
        while proc.poll() is None:
            if (proc_bytes(f'/proc/{proc.pid}/status', 'VmRSS') or 0) > kill_bytes:
                reason = f'killed: RSS above {kill_bytes / 1e9:.1f} GB'
            elif (proc_bytes('/proc/meminfo', 'MemAvailable') or MIN_AVAILABLE) < MIN_AVAILABLE:
                reason = 'killed: the machine had under 1 GiB available'
            elif time.monotonic() - start > timeout:
                reason = f'killed: over {timeout:.0f} s'
            if reason:
                proc.kill()
                proc.wait()
                return dict(job, error=reason)
            time.sleep(0.05)
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith(RESULT_TAG):
                return json.loads(line[len(RESULT_TAG):])
        err.seek(0)
        tail = err.read().strip().splitlines()[-1:] or ['no output']
        return dict(job, error=f'exit code {proc.returncode}: {tail[0][:120]}')


def _extrapolate(points, n: int, floor: float, single: float) -> float:
    r"""Value at ``n`` from ``[(size, value), ...]`` measured at smaller sizes:
    the growth exponent of the two largest sizes (at least :obj:`floor`), or
    :obj:`single` from one size."""
    points = sorted(points)
    (n2, v2), exponent = points[-1], single
    if len(points) > 1:
        n1, v1 = points[-2]
        if v1 > 0 and v2 > 0 and n2 > n1:
            exponent = max(floor, math.log(v2 / v1) / math.log(n2 / n1))
    return max(v2, 0.0) * (n / n2) ** min(exponent, 3.0)


def _measured(r: dict) -> bool:
    return bool(r.get('fwd_bwd_times'))


def _predict(done: list, layer: str, n: int):
    r"""Predicted (fwd+bwd seconds, peak bytes) of ``(layer, n)`` from the sizes
    already measured, or None where none was.  The peak is the worker's whole
    RSS (the interpreter's own share kept constant), and on CUDA the larger of
    that and the device's peak allocation."""
    rows = [r for r in done if r['layer'] == layer and r['n'] < n and _measured(r)]
    if not rows:
        return None
    seconds = _extrapolate([(r['n'], statistics.median(r['fwd_bwd_times'])) for r in rows], n,
                           TIME_EXPONENT[layer], TIME_EXPONENT[layer])
    fixed = min(r['import_bytes'] for r in rows)
    memory = fixed + _extrapolate([(r['n'], r['worker_peak_bytes'] - fixed) for r in rows],
                                  n, 1.0, MEMORY_EXPONENT_SINGLE[layer])
    if all('device_peak_bytes' in r for r in rows):
        memory = max(memory, _extrapolate([(r['n'], r['device_peak_bytes']) for r in rows],
                                          n, 1.0, MEMORY_EXPONENT_SINGLE[layer]))
    return seconds, memory


def _plan(job: dict, done: list, args) -> dict:
    r"""Returns the job to run (its repeats chosen), or a result saying why not."""
    layer, n = job['layer'], job['n']
    if layer == 'dense' and n > args.dense_max:
        return dict(job, skipped=f'skipped (N > --dense-max {args.dense_max:,})')
    failed = [r for r in done if r['layer'] == layer and r['n'] < n and not _measured(r)]
    if failed:
        return dict(job, skipped=f"skipped (N={failed[-1]['n']:,} was not measured)")
    prediction = _predict(done, layer, n)
    if prediction is None:
        return dict(job, repeats=args.repeats)
    seconds, memory = prediction
    if memory > args.max_memory_gb * 1e9:
        return dict(job, skipped=f'skipped (~{memory / 1e9:.1f} GB predicted > '
                                 f'--max-memory-gb {args.max_memory_gb:g})')
    if seconds > args.max_seconds:
        return dict(job, skipped=f'skipped (~{seconds:.0f} s fwd+bwd predicted > '
                                 f'--max-seconds {args.max_seconds:g})')
    slow = seconds > SLOW_SECONDS
    return dict(job, repeats=min(args.repeats, args.slow_repeats) if slow else args.repeats)


# -------------------------------------------------------------------- report
def _label(layer: str, k: int) -> str:
    return {'hsa': 'HSA (octree)', 'point_transformer': f'PointTransformerConv (k={k})',
            'dense': 'dense SDPA'}[layer]


def _mib(r: dict, key: str) -> str:
    return f"{(r[key] - r['base_bytes']) / 2**20:,.0f}"


def scaling_table(result: dict) -> str:
    r"""Medians of the timed runs, peak memory growth over the memory after
    setup, and forward+backward against HSA's at the same N."""
    k = result['args']['k']
    runs = result['runs']
    hsa = {r['n']: statistics.median(r['fwd_bwd_times']) for r in runs
           if r['layer'] == 'hsa' and _measured(r)}
    lines = ['| N | layer | fwd s | fwd+bwd s | peak MiB fwd / fwd+bwd | fwd+bwd / HSA |',
             '|---:|---|---:|---:|---:|---:|']
    for r in runs:
        cells = [f"{r['n']:,}", _label(r['layer'], k)]
        if not _measured(r):
            cells += ['-', '-', r.get('skipped') or r.get('error', '?'), '-']
        else:
            fwd_bwd = statistics.median(r['fwd_bwd_times'])
            cells += [f"{statistics.median(r['fwd_times']):.2f}", f'{fwd_bwd:.2f}',
                      f"{_mib(r, 'fwd_high_bytes')} / {_mib(r, 'fwd_bwd_high_bytes')}",
                      f"{fwd_bwd / hsa[r['n']]:.1f}x" if r['n'] in hsa else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def setup_table(result: dict) -> str:
    r"""The untimed setup seconds per N (sampling: the fastest of the workers)."""
    lines = ['| N | sampling s | octree depth | octree nodes | octree build s | compile s | '
             'kNN method | kNN build s |', '|---:|---:|---:|---:|---:|---:|---|---:|']
    for n in sorted({r['n'] for r in result['runs']}):
        row = {r['layer']: r for r in result['runs'] if r['n'] == n and 'sample_s' in r}
        if not row:
            continue
        h, p = row.get('hsa', {}), row.get('point_transformer', {})
        cells = [f'{n:,}', min(r['sample_s'] for r in row.values()), h.get('depth', '-'),
                 f"{h['tree_nodes']:,}" if 'tree_nodes' in h else '-', h.get('octree_s'),
                 h.get('compile_s'), p.get('knn_method', '-'), p.get('knn_s')]
        lines.append('| ' + ' | '.join('-' if c is None else f'{c:.3f}'
                                       if isinstance(c, float) else str(c)
                                       for c in cells) + ' |')
    return '\n'.join(lines)


def report(result: dict, path: str, table: str = 'scaling') -> str:
    r"""The table :obj:`table` of a result file, and the line saying where it
    comes from."""
    from hsa_geo.experiments import provenance_note
    text = scaling_table(result) if table == 'scaling' else setup_table(result)
    return text + '\n\n' + provenance_note(result, path)


def plot(result: dict, path) -> None:
    r"""Median time and peak memory growth against N, per layer."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    args = result['args']
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, layer in enumerate(LAYERS):
        rows = sorted((r for r in result['runs'] if r['layer'] == layer and _measured(r)),
                      key=lambda r: r['n'])
        if not rows:
            continue
        ns, color, label = [r['n'] for r in rows], f'C{i}', _label(layer, args['k'])
        ax_time.loglog(ns, [statistics.median(r['fwd_bwd_times']) for r in rows], 'o-',
                       color=color, label=f'{label} fwd+bwd')
        ax_time.loglog(ns, [statistics.median(r['fwd_times']) for r in rows], 's--',
                       color=color, alpha=0.6, label=f'{label} fwd')
        ax_mem.loglog(ns, [max(r['fwd_bwd_high_bytes'] - r['base_bytes'], 2**20) / 2**20
                           for r in rows], 'o-', color=color, label=label)
    ax_time.set_ylabel('seconds (median)')
    ax_mem.set_ylabel('peak memory growth, fwd+bwd (MiB)')
    for ax in (ax_time, ax_mem):
        ax.set_xlabel('number of points N')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    device = result.get('provenance', {}).get('machine', {}).get('device', '?')
    fig.suptitle(f"One pre-norm block on airplane surface samples: C={args['channels']}, "
                 f"heads={args['heads']}, k={args['k']}; {device}", fontsize=10)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={'Software': None})
    plt.close(fig)
    print(f'plot written to {path}', file=sys.stderr)


# ---------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=DEFAULT_SIZES,
                        help='numbers of points N (default: 10000 100000 1000000)')
    parser.add_argument('--layers', nargs='+', default=LAYERS, choices=LAYERS)
    parser.add_argument('--channels', type=int, default=64, help='width C (default: 64)')
    parser.add_argument('--heads', type=int, default=4,
                        help='attention heads of HSA and dense (default: 4)')
    parser.add_argument('--depth-dim', type=int, choices=[2, 3], default=2,
                        help='octree depth auto_depth(N, DIM), for about 8 points per finest '
                             'voxel if the points filled a DIM-dimensional region; surface '
                             'samples fill ~2 dimensions, so 3 leaves far more points per '
                             'voxel, 2 about 8 (default: 2)')
    parser.add_argument('--k', type=int, default=16,
                        help='neighbours of the PointTransformerConv graph (default: 16)')
    parser.add_argument('--exact-knn-max', type=int, default=20_000,
                        help='exact kNN up to this N, approximate (Morton) beyond '
                             '(default: 20000)')
    parser.add_argument('--dense-max', type=int, default=20_000,
                        help='largest N for dense attention (default: 20000)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed runs per measurement, median reported (default: 5)')
    parser.add_argument('--slow-repeats', type=int, default=2,
                        help=f'repeats where fwd+bwd is predicted above {SLOW_SECONDS:g} s '
                             '(default: 2)')
    parser.add_argument('--max-memory-gb', type=float, default=12.0,
                        help='skip a configuration whose predicted peak memory is above '
                             'this; kill a worker whose RSS passes 1.5x (default: 12)')
    parser.add_argument('--max-seconds', type=float, default=120.0,
                        help='skip a configuration whose predicted fwd+bwd time is above '
                             'this (default: 120)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='(default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch threads in the workers (default: torch's own, which "
                             'follows OMP_NUM_THREADS)')
    parser.add_argument('--seed', type=int, default=0, help='surface sampling seed')
    parser.add_argument('--out', type=pathlib.Path,
                        default=ROOT / 'results' / 'bench_points.json',
                        help='the result file: every run (default: results/bench_points.json)')
    parser.add_argument('--plot', type=pathlib.Path, default=None,
                        help='PNG: time and memory against N (default: the --out file with '
                             '.png when measuring, none with --report)')
    parser.add_argument('--report', metavar='RESULT_JSON',
                        help='measure nothing: print the table of this result file')
    parser.add_argument('--table', choices=TABLES, default='scaling',
                        help='with --report: which table (default: scaling)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    from hsa_geo.experiments import load_result, provenance, save_json
    if args.report:
        result = load_result(args.report)
        print(report(result, args.report, args.table))
        if args.plot:
            plot(result, args.plot)
        return
    if not MESH.exists():
        parser.error(f'{MESH} is missing (the mesh the points are sampled from)')

    from tqdm import tqdm

    # the workers measure; this process stays light
    common = dict(channels=args.channels, heads=args.heads, k=args.k, device=args.device,
                  depth_dim=args.depth_dim,
                  exact_knn_max=args.exact_knn_max, threads=args.threads, seed=args.seed)
    jobs = [dict(common, n=n, layer=layer) for n in sorted(set(args.sizes))
            for layer in LAYERS if layer in args.layers]
    result = {'args': {k: str(v) if isinstance(v, pathlib.Path) else v
                       for k, v in vars(args).items()}, 'runs': []}
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        job = _plan(job, result['runs'], args)
        if 'skipped' not in job:
            job = _run_worker(job, 1.5 * args.max_memory_gb * 1e9,
                              timeout=max(600.0, 30 * args.max_seconds))
        result['runs'].append(job)
        save_json(result, args.out)  # an interrupted run keeps what it measured

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)  # as in the workers, for the provenance
    measured = [r for r in result['runs'] if 'device_name' in r]
    result['provenance'] = provenance(measured[0]['device'] if measured else 'cpu')
    save_json(result, args.out)
    threads = sorted({r['threads'] for r in measured})
    sources = sorted({r['memory_source'] for r in measured if 'memory_source' in r})
    print(f"\nOne pre-norm block on airplane surface samples: C={args.channels}, "
          f"heads={args.heads}, k={args.k}; {result['provenance']['machine']['device']}, "
          f"torch threads per worker {', '.join(map(str, threads)) or '?'}; HSA octree depth "
          f"auto_depth(N, {args.depth_dim}); exact kNN up to N = {args.exact_knn_max:,}, "
          f"approximate (Morton) beyond; medians; peak memory: growth over the memory after "
          f"setup ({'; '.join(sources) or '-'})\n")
    for table in TABLES:
        print(report(result, str(args.out), table), end='\n\n')
    plot(result, args.plot or args.out.with_suffix('.png'))


if __name__ == '__main__':
    main()
