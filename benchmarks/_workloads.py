r"""What the workload benchmarks share (``bench_workloads.py`` on the CPU,
``cuda_check.py`` on a GPU): the three real batches, built from the project's
own data and builders, the interleaved timer and the aten-op counter, and the
HSA and dense-attention steps they time."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ batches
def molecule_samples(count: int, start: int = 0) -> list:
    r"""FreeSolv molecules ``start .. start + count`` as junction-tree
    hierarchies (atoms -> clusters -> molecule) with OGB atom and bond features."""
    from ogb.utils import smiles2graph
    from torch_geometric.data import Data

    from hsa_geo.datasets import read_molecules
    from hsa_geo.transforms import MoleculeHierarchy
    build = MoleculeHierarchy()
    samples = []
    for smiles in read_molecules('ogbg-molfreesolv')['smiles'][start:start + count]:
        graph = smiles2graph(smiles)
        samples.append(build(Data(x=torch.from_numpy(graph['node_feat']), smiles=smiles,
                                  edge_index=torch.from_numpy(graph['edge_index']),
                                  edge_attr=torch.from_numpy(graph['edge_feat']))))
    return samples


def molecule_batch(count: int):
    from torch_geometric.loader import DataLoader
    return next(iter(DataLoader(molecule_samples(count), batch_size=count)))


def point_samples(count: int, points: int = 100, depth: int = 4,
                  vary: bool = False) -> list:
    r"""Clouds of surface samples of the shipped meshes (airplane, ant, nut in
    turn) as octrees; with :obj:`vary` the cloud sizes cycle through
    ``points * (0.5, 0.75, 1, 1.25, 1.5)``."""
    import trimesh
    from torch_geometric.data import Data

    from hsa_geo.datasets import read_mesh
    from hsa_geo.transforms import VoxelHierarchy
    build = VoxelHierarchy(depth)
    samples = []
    for i in range(count):
        mesh = read_mesh(('airplane', 'ant', 'nut')[i % 3])
        surface = trimesh.Trimesh(mesh.pos.numpy(), mesh.face.t().numpy(), process=False)
        size = int(points * (0.5, 0.75, 1.0, 1.25, 1.5)[i % 5]) if vary else points
        xyz, _ = trimesh.sample.sample_surface(surface, size, seed=i)
        samples.append(build(Data(pos=torch.as_tensor(xyz, dtype=torch.float))))
    return samples


def point_batch(count: int, points: int = 100, depth: int = 4):
    from torch_geometric.loader import DataLoader
    return next(iter(DataLoader(point_samples(count, points, depth), batch_size=count)))


def news_texts(count: int) -> List[str]:
    from hsa_geo.datasets import text_corpus
    return text_corpus('news_articles').texts[:count]


def news_batch(count: int):
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from hsa_geo.transforms import TextHierarchy
    build = TextHierarchy()
    samples = [build(Data(text=text)) for text in news_texts(count)]
    return next(iter(DataLoader(samples, batch_size=count)))


def leaf_batch_vector(batch, hierarchy) -> torch.Tensor:
    from hsa_geo.nn import leaf_tree
    return leaf_tree(hierarchy)


# ------------------------------------------------------------------ measuring
def rounds(fns: Dict[str, Callable[[], object]], repeats: int,
           sync: Callable[[], None] = lambda: None) -> Dict[str, float]:
    r"""Median seconds of each function; every round runs each once, in turn
    (:obj:`sync` waits for a GPU before the clock is read)."""
    for fn in fns.values():  # warm-up
        fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def op_counts(fn: Callable[[], object]) -> Dict[str, int]:
    r"""aten operators one call of :obj:`fn` runs: those called from Python
    (``top``) and all, nested ones included (``all``)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith('aten::')]
    top = [e for e in events if e.cpu_parent is None or
           not e.cpu_parent.name.startswith('aten::')]
    return {'top': len(top), 'all': len(events)}


def attention_batch(batch, heads: int, dim: int, seed: int = 0, device='cpu'):
    r"""Random q, k, v over the batch's leaves, the compiled hierarchy, and
    the padded layout of the same leaves for dense attention."""
    from torch_geometric.utils import to_dense_batch

    from hsa_geo import Hierarchy
    batch = batch.to(device)
    hierarchy = Hierarchy.from_hetero(batch)
    gen = torch.Generator().manual_seed(seed)
    n = hierarchy.num_leaves
    q, k, v = (torch.randn(n, heads, dim, generator=gen).to(device) for _ in range(3))
    graph = leaf_batch_vector(batch, hierarchy)
    _, mask = to_dense_batch(q.view(n, -1), graph)
    return hierarchy, (q, k, v), graph, mask


def dense_attention(q, k, v, graph, mask):
    r"""SDPA over the padded batch with the key-padding mask, back to the
    leaves."""
    from torch_geometric.utils import to_dense_batch
    n, heads, dim = q.shape
    qd, kd, vd = (to_dense_batch(t.reshape(n, -1), graph)[0]
                  .view(mask.size(0), mask.size(1), heads, -1).transpose(1, 2)
                  for t in (q, k, v))
    out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask[:, None, None, :])
    return out.transpose(1, 2)[mask]


def pytorch_path(fn: Callable[[], object]) -> Callable[[], object]:
    r""":obj:`fn` run on the engine's PyTorch path (the fused CPU kernels
    switched off for the call), for timing the two paths interleaved."""
    def run():
        old = os.environ.get('HSA_GEO_CPU_KERNELS')
        os.environ['HSA_GEO_CPU_KERNELS'] = '0'
        try:
            return fn()
        finally:
            if old is None:
                del os.environ['HSA_GEO_CPU_KERNELS']
            else:
                os.environ['HSA_GEO_CPU_KERNELS'] = old
    return run


def hsa_step(hierarchy, q, k, v, backward: bool):
    from hsa_geo import hsa
    if not backward:
        with torch.no_grad():
            return hsa(q, k, v, hierarchy)
    args = [t.detach().requires_grad_() for t in (q, k, v)]
    hsa(*args, hierarchy).sum().backward()


def dense_step(q, k, v, graph, mask, backward: bool):
    if not backward:
        with torch.no_grad():
            return dense_attention(q, k, v, graph, mask)
    args = [t.detach().requires_grad_() for t in (q, k, v)]
    dense_attention(*args, graph, mask).sum().backward()
