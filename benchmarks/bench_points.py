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

* time: median wall time of ``--repeats`` forwards (``torch.no_grad``,
  ``model.eval()``) and of ``--repeats`` forward+backward passes (loss = the
  output's sum, gradients for all parameters); the memory runs below are the
  warm-up.  A configuration predicted above 10 s per forward+backward runs
  ``--slow-repeats`` (default 2) repeats instead; the ``reps`` column says.
* memory: the peak resident-set growth over the RSS after the inputs were
  built, of one forward and (separately) of one forward+backward.  The RSS
  high-water mark (``VmHWM``, what ``ru_maxrss`` reports) is reset through
  ``/proc/self/clear_refs`` before each, so the setup's own peak (kNN chunks,
  octree) does not hide the layer's; where the reset is not possible the
  worker falls back to ``ru_maxrss`` and the table says so.  On CUDA:
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

Example::

    OMP_NUM_THREADS=2 python benchmarks/bench_points.py          # 10^4 .. 10^6
    python benchmarks/bench_points.py --sizes 2000 10000 --repeats 3 --out /tmp/p.md
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import shlex
import subprocess
import sys
import tempfile
import time

from hsa_geo.datasets.files import DATA_DIR

ROOT = pathlib.Path(__file__).resolve().parents[1]

MESH = pathlib.Path(DATA_DIR) / 'airplane.ply'
DEFAULT_SIZES = [10_000, 100_000, 1_000_000]
LAYERS = ['hsa', 'point_transformer', 'dense']
LABELS = {'hsa': 'HSA (octree)', 'point_transformer': 'PointTransformerConv (kNN)',
          'dense': 'dense SDPA'}
# growth exponents for extrapolating to a larger N: time (the lower bound on
# the measured exponent, also assumed from a single size) and memory (the
# exponent assumed from a single size; the measured one is bounded below by 1)
TIME_EXPONENT = {'hsa': 1.0, 'point_transformer': 1.0, 'dense': 2.0}
MEMORY_EXPONENT_SINGLE = {'hsa': 1.0, 'point_transformer': 1.0, 'dense': 2.0}
SLOW_SECONDS = 10.0          # predicted fwd+bwd above this: --slow-repeats
MIN_AVAILABLE = 1 << 30      # kill a worker when the machine has less left
RESULT_TAG = 'BENCH_POINTS_RESULT '


# ----------------------------------------------------------------- the worker
def _high_water_reset() -> bool:
    r"""Resets this process's peak RSS (VmHWM) to its current RSS (Linux)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _proc_kib(path: str, key: str):
    r"""A ``key: value kB`` field of a /proc file in bytes (None if absent)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _high_water_bytes() -> int:
    r"""This process's peak RSS in bytes: VmHWM, else ru_maxrss (kB on Linux)."""
    value = _proc_kib('/proc/self/status', 'VmHWM')
    if value is None:
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return value


def _device_name(device) -> str:
    if device.type == 'cuda':
        import torch
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return f"CPU: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    import platform
    return f'CPU: {platform.processor() or platform.machine()}'


def _sample_points(n: int, seed: int):
    r"""``n`` surface samples of the mesh: positions centred and scaled to a
    unit bounding box, and the normal of each sample's face."""
    import numpy as np
    import torch
    import trimesh

    mesh = trimesh.load(str(MESH), force='mesh')
    xyz, face = trimesh.sample.sample_surface(mesh, n, seed=seed)
    pos = torch.from_numpy(np.asarray(xyz, dtype=np.float32))
    low, high = pos.min(0).values, pos.max(0).values
    pos = (pos - (low + high) / 2) / (high - low).max()
    normal = torch.from_numpy(np.asarray(mesh.face_normals[face], dtype=np.float32))
    return pos, normal


def _models():
    r"""The pre-norm block and the two attention layers it wraps (HSA brings
    its own block, :class:`hsa_geo.nn.HSAEncoderLayer`, of the same shape)."""
    import torch
    from torch.nn import GELU, LayerNorm, Linear, Sequential

    class PreNormBlock(torch.nn.Module):
        def __init__(self, attn: torch.nn.Module, channels: int):
            super().__init__()
            self.attn = attn
            self.norm1, self.norm2 = LayerNorm(channels), LayerNorm(channels)
            self.ffn = Sequential(Linear(channels, 2 * channels), GELU(),
                                  Linear(2 * channels, channels))

        def forward(self, x, *args):
            h = x + self.attn(self.norm1(x), *args)
            return h + self.ffn(self.norm2(h))

    class DenseAttention(torch.nn.Module):
        def __init__(self, channels: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv = Linear(channels, 3 * channels)
            self.out = Linear(channels, channels)

        def forward(self, x):
            n = x.size(0)
            q, k, v = self.qkv(x).view(n, 3, self.heads, -1).permute(1, 2, 0, 3)
            out = torch.nn.functional.scaled_dot_product_attention(
                q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0))      # [1, heads, N, d]
            return self.out(out[0].transpose(0, 1).reshape(n, -1))

    return PreNormBlock, DenseAttention


def _worker(job: dict) -> dict:
    import torch
    import trimesh  # noqa: F401  (imported before the sampling is timed)
    from torch_geometric.data import Data
    from torch_geometric.nn import MLP, PointTransformerConv

    from hsa_geo import Hierarchy
    from hsa_geo.nn import HSAEncoderLayer
    from hsa_geo.testing import median_time, rss_bytes
    from hsa_geo.transforms import VoxelHierarchy, auto_depth
    from hsa_geo.utils import knn_graph

    if job['threads']:
        torch.set_num_threads(job['threads'])
    device = torch.device(job['device'] or ('cuda' if torch.cuda.is_available() else 'cpu'))
    cuda = device.type == 'cuda'

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def timed(fn):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - start

    PreNormBlock, DenseAttention = _models()
    result = dict(job, device=str(device), device_name=_device_name(device),
                  torch=torch.__version__, threads=torch.get_num_threads(),
                  import_bytes=rss_bytes())
    torch.manual_seed(0)
    n, channels, heads, layer = job['n'], job['channels'], job['heads'], job['layer']
    (pos_cpu, normal), result['sample_s'] = timed(lambda: _sample_points(n, job['seed']))
    pos = pos_cpu.to(device)
    with torch.no_grad():
        x = torch.nn.Linear(6, channels).to(device)(torch.cat([pos, normal.to(device)], 1))
    args, kwargs = (), {}
    if layer == 'hsa':  # built and compiled on the CPU, as a pre_transform would
        depth = auto_depth(n, job['depth_dim'])
        tree, result['octree_s'] = timed(lambda: VoxelHierarchy(depth)(Data(pos=pos_cpu)))
        hierarchy, result['compile_s'] = timed(lambda: Hierarchy.from_hetero(tree))
        args = (hierarchy.to(device), )
        kwargs = dict(pos={t: tree[t].hsa_pos.to(device) for t in tree.node_types})
        model = HSAEncoderLayer(channels, channels, heads, style='prenorm', pos_channels=3)
        result.update(depth=depth, tree_nodes=hierarchy.num_nodes,
                      max_branching=hierarchy.max_branching)
    elif layer == 'point_transformer':
        method = 'exact' if n <= job['exact_knn_max'] else 'morton'
        edge_index, result['knn_s'] = timed(lambda: knn_graph(pos, job['k'], method=method))
        args = (pos, edge_index)
        model = PreNormBlock(PointTransformerConv(
            channels, channels,
            pos_nn=MLP([3, 64, channels], norm=None, plain_last=False),
            attn_nn=MLP([channels, 64, channels], norm=None, plain_last=False)), channels)
        result.update(knn_method=method, edges=edge_index.size(1) + n)  # + self loops
    else:
        model = PreNormBlock(DenseAttention(channels, heads), channels)
    model = model.to(device).eval()
    result['params'] = sum(p.numel() for p in model.parameters())

    def forward():
        with torch.no_grad():
            model(x, *args, **kwargs)
        sync()

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x, *args, **kwargs).sum().backward()
        sync()

    # peak memory of one call each (also the warm-up of the timings)
    result['setup_peak_bytes'] = _high_water_bytes()
    if cuda:
        sync()
        base = torch.cuda.memory_allocated(device)
        for key, fn in (('fwd_peak_bytes', forward), ('fwd_bwd_peak_bytes', forward_backward)):
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            result[key] = torch.cuda.max_memory_allocated(device) - base
        result['memory_source'] = 'torch.cuda.max_memory_allocated'
        result['device_peak_bytes'] = base + result['fwd_bwd_peak_bytes']
        result['worker_peak_bytes'] = _high_water_bytes()
    else:
        base = rss_bytes()
        result['base_bytes'] = base
        peaks = [result['setup_peak_bytes']]
        reset = True
        for key, fn in (('fwd_peak_bytes', forward), ('fwd_bwd_peak_bytes', forward_backward)):
            reset = _high_water_reset() and reset
            fn()
            peaks.append(_high_water_bytes())
            result[key] = peaks[-1] - base
        result['memory_source'] = ('VmHWM, reset after setup' if reset else
                                   'VmHWM, not resettable here: includes the setup peak')
        result['worker_peak_bytes'] = max(peaks)
    result['fwd_s'] = median_time(forward, job['repeats'], warmup=False)
    result['fwd_bwd_s'] = median_time(forward_backward, job['repeats'], warmup=False)
    return result


def _worker_main(job_json: str):
    job = json.loads(job_json)
    try:
        result = _worker(job)
    except Exception as e:  # noqa: BLE001  (reported in the table)
        result = dict(job, error=f'{type(e).__name__}: {str(e)[:120]}')
    print(RESULT_TAG + json.dumps(result), flush=True)


# ----------------------------------------------------------------- the parent
def _run_worker(job: dict, kill_bytes: float, timeout: float) -> dict:
    r"""Runs one configuration in a fresh interpreter, watching its memory."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()),
                                 '--worker', json.dumps(job)], stdout=out, stderr=err,
                                text=True)
        start, reason = time.monotonic(), None
        while proc.poll() is None:
            if (_proc_kib(f'/proc/{proc.pid}/status', 'VmRSS') or 0) > kill_bytes:
                reason = f'killed: RSS above {kill_bytes / 1e9:.1f} GB'
            elif (_proc_kib('/proc/meminfo', 'MemAvailable') or MIN_AVAILABLE) < MIN_AVAILABLE:
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


def _predict(done: list, layer: str, n: int):
    r"""Predicted (fwd+bwd seconds, peak bytes) of ``(layer, n)`` from the sizes
    already measured, or None where none was.  The peak is the worker's whole
    RSS (the interpreter's own share kept constant), and on CUDA the larger of
    that and the device's peak allocation."""
    rows = [r for r in done if r['layer'] == layer and r['n'] < n and 'fwd_bwd_s' in r]
    if not rows:
        return None
    seconds = _extrapolate([(r['n'], r['fwd_bwd_s']) for r in rows], n,
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
    failed = [r for r in done if r['layer'] == layer and r['n'] < n and 'fwd_bwd_s' not in r]
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


# -------------------------------------------------------------------- output
def _structure(r: dict, args) -> str:
    if r['layer'] == 'hsa':
        if 'depth' not in r:
            return 'octree'
        return (f"octree depth {r['depth']}, {r['tree_nodes']:,} nodes, families "
                f"<= {r['max_branching']}")
    if r['layer'] == 'point_transformer':
        if 'knn_method' not in r:
            return f'k={args.k} kNN'
        return f"k={args.k} {r['knn_method']} kNN, {r['edges']:,} edges"
    return 'all N^2 pairs'


def _table(results: list, args) -> str:
    hsa = {r['n']: r for r in results if r['layer'] == 'hsa' and 'fwd_s' in r}
    lines = ['| N | layer | neighbourhood | params | reps | fwd ms | fwd+bwd ms | '
             'peak MiB fwd / fwd+bwd | fwd / HSA | fwd+bwd / HSA |',
             '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        cells = [f"{r['n']:,}", LABELS[r['layer']], _structure(r, args)]
        if 'fwd_s' not in r:
            cells += ['-', '-', r.get('skipped') or r.get('error', '?'), '-', '-', '-', '-']
        else:
            h = hsa.get(r['n'])
            cells += [f"{r['params']:,}", str(r['repeats']), f"{r['fwd_s'] * 1e3:,.1f}",
                      f"{r['fwd_bwd_s'] * 1e3:,.1f}",
                      f"{r['fwd_peak_bytes'] / 2**20:,.0f} / "
                      f"{r['fwd_bwd_peak_bytes'] / 2**20:,.0f}"]
            cells += [f"{r[key] / h[key]:.2f}x" if h else '-' for key in ('fwd_s', 'fwd_bwd_s')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', 'Untimed setup, seconds (each in the worker of its layer; sampling: the '
              'fastest of the workers):', '',
              '| N | sampling | octree depth | octree build | compile | kNN method | '
              'kNN build |', '|---:|---:|---:|---:|---:|---|---:|']
    for n in sorted({r['n'] for r in results}):
        row = {r['layer']: r for r in results if r['n'] == n and 'sample_s' in r}
        if not row:
            continue
        h, p = row.get('hsa', {}), row.get('point_transformer', {})
        cells = [f'{n:,}', min(r['sample_s'] for r in row.values()), h.get('depth', '-'),
                 h.get('octree_s'), h.get('compile_s'), p.get('knn_method', '-'),
                 p.get('knn_s')]
        lines.append('| ' + ' | '.join('-' if c is None else f'{c:.3f}'
                                       if isinstance(c, float) else str(c)
                                       for c in cells) + ' |')
    return '\n'.join(lines)


def _plot(results: list, path: pathlib.Path, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, layer in enumerate(LAYERS):
        rows = sorted((r for r in results if r['layer'] == layer and 'fwd_s' in r),
                      key=lambda r: r['n'])
        if not rows:
            continue
        ns, color = [r['n'] for r in rows], f'C{i}'
        ax_time.loglog(ns, [r['fwd_bwd_s'] for r in rows], 'o-', color=color,
                       label=f'{LABELS[layer]} fwd+bwd')
        ax_time.loglog(ns, [r['fwd_s'] for r in rows], 's--', color=color, alpha=0.6,
                       label=f'{LABELS[layer]} fwd')
        ax_mem.loglog(ns, [max(r['fwd_bwd_peak_bytes'], 2**20) / 2**20 for r in rows], 'o-',
                      color=color, label=LABELS[layer])
    ax_time.set_ylabel('seconds (median)')
    ax_mem.set_ylabel('peak memory growth, fwd+bwd (MiB)')
    for ax in (ax_time, ax_mem):
        ax.set_xlabel('number of points N')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
                        default=ROOT / 'results' / 'bench_points.md',
                        help='markdown table; the JSON goes beside it with .json '
                             '(default: results/bench_points.md)')
    parser.add_argument('--plot', type=pathlib.Path,
                        default=ROOT / 'results' / 'bench_points.png',
                        help='PNG: time and memory against N '
                             '(default: results/bench_points.png)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args.worker)
    if not MESH.exists():
        parser.error(f'{MESH} is missing (the mesh the points are sampled from)')

    from importlib.metadata import version

    from tqdm import tqdm

    # the workers import torch; this process stays light
    common = dict(channels=args.channels, heads=args.heads, k=args.k, device=args.device,
                  depth_dim=args.depth_dim,
                  exact_knn_max=args.exact_knn_max, threads=args.threads, seed=args.seed)
    jobs = [dict(common, n=n, layer=layer) for n in sorted(set(args.sizes))
            for layer in LAYERS if layer in args.layers]
    results = []
    for job in tqdm(jobs, desc='configurations', file=sys.stderr):
        job = _plan(job, results, args)
        if 'skipped' not in job:
            job = _run_worker(job, 1.5 * args.max_memory_gb * 1e9,
                              timeout=max(600.0, 30 * args.max_seconds))
        results.append(job)

    measured = [r for r in results if 'device_name' in r]
    first = measured[0] if measured else {}
    device = first.get('device', args.device or '?')
    device_name = first.get('device_name', '?')
    threads = sorted({r['threads'] for r in measured})
    sources = sorted({r['memory_source'] for r in measured if 'memory_source' in r})
    command = ' '.join(shlex.quote(a) for a in [
        *(f'{v}={os.environ[v]}' for v in ('OMP_NUM_THREADS', ) if v in os.environ),
        'python', 'benchmarks/bench_points.py', *(sys.argv[1:] if argv is None else argv)])
    title = (f'One pre-norm block on airplane surface samples: C={args.channels}, '
             f'heads={args.heads}, k={args.k}; {device_name}')
    text = '\n'.join([
        f'# {title}', '',
        f"- device: {device} ({device_name}); torch {first.get('torch', '?')}, "
        f"PyG {version('torch_geometric')}; torch threads per worker: "
        f"{', '.join(map(str, threads)) or '?'} ({os.cpu_count()} CPUs)",
        '- block: LN, attention, residual, LN, FFN (2C, GELU), residual; times: medians '
        'of `reps` runs; ratios: against HSA at the same N',
        f'- HSA octree depth: auto_depth(N, {args.depth_dim}); PointTransformerConv: exact '
        f'kNN up to N = {args.exact_knn_max:,}, approximate (Morton) beyond',
        f"- memory: peak growth over the memory after setup ({'; '.join(sources) or '-'})",
        f'- command: `{command}`', '', _table(results, args), ''])
    print('\n' + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix('.json').write_text(json.dumps(
        dict(command=command, device=device, device_name=device_name,
             pyg=version('torch_geometric'), results=results), indent=1) + '\n')
    _plot(results, args.plot, title)
    print(f'table written to {args.out} (and .json), plot to {args.plot}')


if __name__ == '__main__':
    main()
