r"""One configuration of ``bench_points.py`` (a layer at one number of
points N), measured in the fresh process the benchmark starts for it: the
surface samples of the airplane, the three layers in their pre-norm block,
every timed forward and forward+backward, and the memory before and at the
peak of each call (see the benchmark's docstring).

The worker prints its result as one JSON line tagged :data:`RESULT_TAG`.
"""
from __future__ import annotations

import json
import pathlib
import resource
import time

from hsa_geo.datasets.files import DATA_DIR

MESH = pathlib.Path(DATA_DIR) / 'airplane.ply'
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


def proc_bytes(path: str, key: str):
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
    value = proc_bytes('/proc/self/status', 'VmHWM')
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


def measure(job: dict) -> dict:
    r"""Measures one configuration (a layer at one N) in this process; the
    result holds the job, every timed run and the memory before and at the
    peak of each call."""
    import torch
    import trimesh  # noqa: F401  (imported before the sampling is timed)
    from torch_geometric.data import Data
    from torch_geometric.nn import MLP, PointTransformerConv

    from hsa_geo import Hierarchy
    from hsa_geo.nn import HSAEncoderLayer
    from hsa_geo.testing import rss_bytes
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

    # peak memory of one call each (also the warm-up of the timings): the
    # memory after setup ('base_bytes') and the high-water mark of each call
    result['setup_peak_bytes'] = _high_water_bytes()
    if cuda:
        sync()
        result['base_bytes'] = torch.cuda.memory_allocated(device)
        for key, fn in (('fwd_high_bytes', forward), ('fwd_bwd_high_bytes', forward_backward)):
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            result[key] = torch.cuda.max_memory_allocated(device)
        result['memory_source'] = 'torch.cuda.max_memory_allocated'
        result['device_peak_bytes'] = result['fwd_bwd_high_bytes']
        result['worker_peak_bytes'] = _high_water_bytes()
    else:
        result['base_bytes'] = rss_bytes()
        peaks = [result['setup_peak_bytes']]
        reset = True
        for key, fn in (('fwd_high_bytes', forward), ('fwd_bwd_high_bytes', forward_backward)):
            reset = _high_water_reset() and reset
            fn()
            peaks.append(_high_water_bytes())
            result[key] = peaks[-1]
        result['memory_source'] = ('VmHWM, reset after setup' if reset else
                                   'VmHWM, not resettable here: includes the setup peak')
        result['worker_peak_bytes'] = max(peaks)
    result['fwd_times'] = [timed(forward)[1] for _ in range(job['repeats'])]
    result['fwd_bwd_times'] = [timed(forward_backward)[1] for _ in range(job['repeats'])]
    return result


def worker_main(job_json: str) -> None:
    r"""Measures the job given as JSON and prints its result as one tagged
    JSON line."""
    job = json.loads(job_json)
    try:
        result = measure(job)
    except Exception as e:  # noqa: BLE001  (reported in the table)
        result = dict(job, error=f'{type(e).__name__}: {str(e)[:120]}')
    print(RESULT_TAG + json.dumps(result), flush=True)
