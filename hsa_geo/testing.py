r"""Synthetic forests for tests and benchmarks, and the measuring tools that
the benchmark and example scripts share (the summaries of their results are
in :mod:`hsa_geo.experiments`)."""
from __future__ import annotations

import os
import statistics
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

# mean_ci95 lives with the other summaries of results; kept importable from here
from hsa_geo.experiments.summary import mean_ci95

__all__ = ['random_forest', 'regular_tree', 'random_ragged_tree', 'flat_tree',
           'degenerate_forests', 'hetero_forest', 'median_time',
           'rss_bytes', 'PeakMemory', 'mean_ci95', 'CompileCounter']


def _relabel(parent_of: list, is_leaf: list, rng: Optional[np.random.Generator],
             shuffle: bool) -> Tuple[Tensor, int]:
    r"""Numbers leaves first, then internal nodes, optionally shuffled."""
    leaves = [i for i, leaf in enumerate(is_leaf) if leaf]
    internal = [i for i, leaf in enumerate(is_leaf) if not leaf]
    if shuffle and rng is not None:
        rng.shuffle(leaves)
        rng.shuffle(internal)
    new_id = {old: new for new, old in enumerate(leaves + internal)}
    parent = torch.full((len(parent_of), ), -1, dtype=torch.long)
    for old, p in enumerate(parent_of):
        if p >= 0:
            parent[new_id[old]] = new_id[p]
    return parent, len(leaves)


def random_forest(seed: int, num_roots: int = 1, max_depth: int = 3,
                  max_branching: int = 4, leaf_prob: float = 0.3,
                  shuffle: bool = True) -> Tuple[Tensor, int]:
    r"""A random ragged forest: mixed depths, unary chains, families of one,
    single-leaf trees.  Returns ``(parent, num_leaves)`` for
    :meth:`hsa_geo.Hierarchy.from_parent`."""
    rng = np.random.default_rng(seed)
    parent_of, is_leaf = [], []

    def grow(p: int, depth: int):
        node = len(parent_of)
        parent_of.append(p)
        if depth >= max_depth or (depth > 0 and rng.random() < leaf_prob):
            is_leaf.append(True)
            return
        is_leaf.append(False)
        for _ in range(int(rng.integers(1, max_branching + 1))):
            grow(node, depth + 1)

    for _ in range(num_roots):
        grow(-1, 0 if rng.random() < 0.9 else max_depth)  # a few lone leaves
    return _relabel(parent_of, is_leaf, rng, shuffle)


def regular_tree(num_leaves: int, branching: Sequence[int]) -> Tuple[Tensor, int]:
    r"""A tree over ``num_leaves`` leaves grouped bottom-up by the given
    branching factors (e.g. ``(16, 16, 16)``); groups at the end may be
    smaller.  Leaves keep their order; nodes of each level follow the leaves.
    Above the last factor, everything joins one root."""
    parents, offset, count = [], 0, num_leaves
    for b in branching:
        groups = (count + b - 1) // b
        if groups <= 1:
            break
        parents.append(offset + count + torch.arange(count) // b)
        offset += count
        count = groups
    parents.append(torch.full((count, ), offset + count, dtype=torch.long)
                   if count > 1 else torch.full((count, ), -1, dtype=torch.long))
    if count > 1:
        parents.append(torch.tensor([-1]))
    return torch.cat(parents), num_leaves


def random_ragged_tree(num_leaves: int, low: int = 2, high: int = 32,
                       seed: int = 0) -> Tuple[Tensor, int]:
    r"""A tree whose every family has a uniformly random size in
    ``[low, high]``, built bottom-up over leaves in order."""
    rng = np.random.default_rng(seed)
    parents, offset, count = [], 0, num_leaves
    while count > high:
        sizes = rng.integers(low, high + 1, size=count // low + 1)
        ends = np.cumsum(sizes)
        groups = int(np.searchsorted(ends, count)) + 1
        group_of = np.repeat(np.arange(groups), sizes[:groups])[:count]
        parents.append(offset + count + torch.from_numpy(group_of).long())
        offset += count
        count = groups
    parents.append(torch.full((count, ), offset + count, dtype=torch.long))
    parents.append(torch.tensor([-1]))
    return torch.cat(parents), num_leaves


def flat_tree(num_leaves: int) -> Tuple[Tensor, int]:
    r"""One root whose children are all the leaves: HSA is softmax
    attention there."""
    parent = torch.full((num_leaves + 1, ), num_leaves, dtype=torch.long)
    parent[-1] = -1
    return parent, num_leaves


#: Forests at the edges of the dynamic program, ``name -> (parent, num_leaves)``:
#: every tree a lone leaf, single-level forests, unary chains, families of one
#: child, and mixtures.  Every numeric path is tested on all of them.
DEGENERATE_FORESTS = {
    'one_lone_leaf': ([-1], 1),
    'three_lone_leaves': ([-1, -1, -1], 3),
    'flat_pair': ([2, 2, -1], 2),
    'flat_and_lone_leaves': ([-1, 4, 4, -1, -1], 4),
    'one_child_family': ([1, -1], 1),
    'unary_chain': ([1, 2, 3, -1], 1),
    'chain_beside_pair': ([3, 4, 4, 5, 5, 6, -1], 3),
    'one_child_families_nested': ([4, 4, 5, 6, 7, 7, 8, 8, -1], 4),
    'mixed_depths_and_lone_leaf': ([4, 6, 6, -1, 5, 7, 7, -1], 4),
}


def degenerate_forests():
    r"""The :data:`DEGENERATE_FORESTS` as ``(name, parent, num_leaves)``."""
    return [(name, torch.tensor(parent), n) for name, (parent, n) in
            DEGENERATE_FORESTS.items()]


def hetero_forest(seed: int, channels: int = 8, pos_channels: Optional[int] = None):
    r"""A random tree (:func:`random_forest`, nodes in order) stored as the
    ``HeteroData`` a builder writes: ``'leaf'`` nodes with features ``x``,
    ``'node'`` clusters, ``('leaf', 'in', 'node')`` and ``('node', 'in',
    'node')`` edges, and ``hsa_pos`` on both types when :obj:`pos_channels` is
    given."""
    from torch_geometric.data import HeteroData
    parent, n = random_forest(seed, 1, 3, 4, shuffle=False)
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['leaf'].x = torch.randn(n, channels, generator=gen)
    data['node'].num_nodes = parent.numel() - n
    if pos_channels:
        data['leaf'].hsa_pos = torch.randn(n, pos_channels, generator=gen)
        data['node'].hsa_pos = torch.randn(parent.numel() - n, pos_channels, generator=gen)
    child = torch.arange(parent.numel())
    has = parent >= 0
    child, par = child[has], parent[has]
    leaf = child < n
    data['leaf', 'in', 'node'].edge_index = torch.stack([child[leaf], par[leaf] - n])
    data['node', 'in', 'node'].edge_index = torch.stack([child[~leaf] - n, par[~leaf] - n])
    return data


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    r"""Median wall time in seconds of :obj:`repeats` calls of :obj:`fn`, for
    the benchmark and example scripts.

    The clock is :mod:`torch.utils.benchmark`'s (``timer``: it waits for the
    accelerator, then reads :func:`time.perf_counter`).  Not its ``Timer``:
    ``Timer.timeit`` makes at least two untimed calls before every
    measurement and ``Timer.blocked_autorange`` chooses how many calls to make
    (a search for the block size, then calls until ``min_run_time``), on one
    thread unless told; the benchmark workers time an expensive call a fixed
    number of times, in a fresh process per measurement.

    Args:
        fn (Callable): The call timed, without arguments.
        repeats (int): How many calls are timed.
        warmup (bool, optional): Make one untimed call first. (default: :obj:`True`)

    Returns:
        The median of the :obj:`repeats` times, in seconds.
    """
    from torch.utils.benchmark import timer
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = timer()
        fn()
        times.append(timer() - start)
    return statistics.median(times)


def rss_bytes() -> int:
    r"""This process's resident memory in bytes (Linux, ``/proc/self/statm``)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakMemory:
    r"""Peak memory of a block of code that trains a model, in bytes
    (:attr:`peak`).

    On a CUDA device: ``torch.cuda.max_memory_allocated`` above what was
    allocated on entry (everything: activations, workspaces, gradients,
    optimizer state created inside the block).  On the CPU, where torch keeps
    no allocator statistics: the largest total size of the tensors saved for
    backward by one step (the activation memory, each storage counted once),
    a step ending at each call of :meth:`step`::

        with PeakMemory(device) as memory:
            for batch in loader:
                loss = ...; loss.backward(); memory.step()
        print(memory.peak / 2**20, 'MiB')
    """
    def __init__(self, device='cpu'):
        self.device = torch.device(device)
        self.peak = 0

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._storages, self._bytes = set(), 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._storages:
            self._storages.add(storage.data_ptr())
            self._bytes += storage.nbytes()
        return tensor

    def step(self):
        r"""Ends a training step (CPU: its saved tensors are released)."""
        if self.device.type != 'cuda':
            self.peak = max(self.peak, self._bytes)
            self._storages, self._bytes = set(), 0

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._hooks.__exit__(*exc)
            self.step()
        return False


class CompileCounter:
    r"""A ``torch.compile`` backend that counts compilations: PyTorch's
    ``torch._dynamo.testing.CompileCounterWithBackend('inductor')``
    (:attr:`counter`: inductor compiles every graph, ``frame_count`` counts
    the backend's calls) with :attr:`count`, the distinct compilations
    dynamo asked for: a recompile is a new compile id, while dynamo
    restarting an analysis (e.g. to specialise a float) calls the backend
    again under the same id, which ``frame_count`` counts and :attr:`count`
    does not::

        counter = CompileCounter()
        compiled = torch.compile(model, backend=counter, dynamic=True)
        ...
        print(counter.count)
    """
    def __init__(self):
        from torch._dynamo.testing import CompileCounterWithBackend
        self.counter = CompileCounterWithBackend('inductor')
        self.ids = set()

    @property
    def count(self) -> int:
        r"""The compilations so far (distinct compile ids)."""
        return len(self.ids)

    def __call__(self, graph_module, example_inputs):
        from torch._guards import CompileContext
        self.ids.add(str(CompileContext.current_compile_id()))
        return self.counter(graph_module, example_inputs)
