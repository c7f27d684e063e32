r"""Fused CPU kernels: the whole dynamic program in two compiled calls, one
forward (bottom-up then top-down) and one backward (its two passes), as loops
over the families of :mod:`hsa_geo.engine.families`, level by level and
parallel over the families of a level (``prange``), compiled by numba (the
``fast`` extra: ``pip install numba``; a first-call JIT of seconds, cached on
disk; nothing tied to torch's C++ ABI).  Without numba, or with
``HSA_GEO_CPU_KERNELS=0``, the PyTorch path runs instead.

Per family and head, a kernel gathers the children's rows (a leaf's from the
inputs, an internal node's from the node arrays) into small contiguous
blocks, then for every row :math:`A` (names as in ``docs/math.md``):

.. math::
    s(A, B) &= \tilde\rho_q(A) \cdot \rho_k(B) + \epsilon(A) \cdot \epsilon(B)
        + b(A, B) + \log n(B), \qquad
    \log Z(A) = \log \sum_B e^{s(A, B)}, \\
    \theta(A) &= \sum_B \frac{\kappa(A, B)}{1 - p} e^{s(A, B) - \log Z(A)}
        \rho_v(B), \qquad
    \mu(A) = \sigma(\nu(A) - \log Z(A)),

the parent's statistics the :math:`n(C)/n(P)`-weighted means of its
children's and :math:`\nu(P)` the weighted mean of
:math:`\operatorname{logaddexp}(\nu(C), \log Z(C))`; then top-down
:math:`\text{acc}(C) = \text{acc}(P) + m(P)(1 - \mu(C))\theta(C)`,
:math:`m(C) = m(P)\mu(C)`.  Only the structural siblings of a row are ever
touched (no padding, no masked entries), so a NaN or an infinity in an input
reaches exactly the rows that depend on it, with no guard needed.

**Dropout** keeps a pair with :math:`\kappa(A, B) = [u \ge p]`, :math:`u`
uniform from a counter-based generator (splitmix64 of a per-call seed drawn
from torch's generator and the pair's number and head): the backward pass
redraws the same mask, and no mask is ever stored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from hsa_geo.engine.families import Families

__all__ = ['available', 'usable', 'forward', 'backward', 'State', 'MAX_WIDTH']

#: Widest family the kernels take: a wider one is a dense attention block
#: that batched GEMMs (the PyTorch path) do faster than scalar loops.
MAX_WIDTH = 256

_KERNELS = {}


def available() -> bool:
    r"""Whether numba can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def usable(device: torch.device, dtype: torch.dtype) -> bool:
    r"""Whether a call on this device and dtype may run on the kernels: CPU
    tensors of float32 or float64, numba installed, and
    ``HSA_GEO_CPU_KERNELS`` not ``0`` (the engine also needs the families no
    wider than :data:`MAX_WIDTH`)."""
    if os.environ.get('HSA_GEO_CPU_KERNELS', '1') == '0':
        return False
    return device.type == 'cpu' and dtype in (torch.float32, torch.float64) and available()


@dataclass
class State:
    r"""What the forward kernel hands the backward kernel, as numpy arrays
    (per child ``c`` of the families' order, per internal node ``n``): the
    node statistics (q, k, v ``[n, H, .]``, nu ``[n, H]``), ``log_norm``,
    ``mu``, ``one_minus_mu`` ``[C, H]``, ``theta [C, H, dv]``, ``mass [n,
    H]``, ``leaf_mass [L, H]``, and the dropout seed."""
    arrays: tuple
    seed: int


def draw_seed() -> int:
    r"""The dropout seed of one forward call, from torch's default generator
    (so :func:`torch.manual_seed` makes the masks reproducible)."""
    return int(torch.randint(0, 1 << 62, (1, )))


def _blocks() -> int:
    r"""numba's threads set to torch's; the families of a level are cut into
    four blocks per thread (each block allocates its scratch once)."""
    import numba
    threads = torch.get_num_threads()
    wanted = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    # numba's first query launches its threading layer; its OpenMP layer then
    # sets the process's OpenMP thread count (which torch shares) to every
    # core: torch keeps the count it had (a changed count would also make
    # torch.compile recompile, the count being part of its global state)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return 4 * wanted


def _structure(fam: Families) -> tuple:
    r"""The families' index arrays as numpy views, made once per layout."""
    found = fam.cache.get('numpy')
    if found is None:
        found = fam.cache['numpy'] = tuple(t.numpy() for t in (
            fam.level_ptr, fam.parent, fam.child_ptr, fam.pair_ptr, fam.ref, fam.node,
            fam.weight, fam.log_count, fam.root_nodes, fam.root_leaves))
    return found


def _inputs(q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor], bias: Optional[Tensor]):
    r"""``q``, ``k``, ``v`` as contiguous numpy arrays, positions as
    ``[nodes, 1 or H, c]`` and the bias as ``[pairs, 1 or H]``, with empty
    stand-ins when absent (one compiled signature per dtype)."""
    dtype = _DTYPES[q.dtype]
    p = np.zeros((1, 1, 0), dtype) if pos is None else \
        _array(pos.unsqueeze(1) if pos.dim() == 2 else pos)
    b = np.zeros((1, 1), dtype) if bias is None else \
        _array(bias.unsqueeze(1) if bias.dim() == 1 else bias)
    return _array(q), _array(k), _array(v), p, b


def _array(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())


_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def forward(fam: Families, q: Tensor, k: Tensor, v: Tensor, pos: Optional[Tensor],
            bias: Optional[Tensor], include_self: bool, causal: bool, scale: float,
            dropout: float):
    r"""The output ``[L, H, d_v]`` and the :class:`State` for :func:`backward`."""
    forward_kernel, _ = _compiled()
    blocks = _blocks()
    arrays = _inputs(q, k, v, pos, bias)
    num_leaves, heads, dim = q.shape
    dim_v = v.size(2)
    n, c = fam.num_internal, fam.ref.numel()
    dtype = arrays[0].dtype
    state = (np.empty((n, heads, dim), dtype), np.empty((n, heads, dim), dtype),
             np.empty((n, heads, dim_v), dtype), np.empty((n, heads), dtype),
             np.empty((c, heads), dtype), np.empty((c, heads), dtype),
             np.empty((c, heads), dtype), np.empty((c, heads, dim_v), dtype),
             np.empty((n, heads), dtype), np.empty((num_leaves, heads), dtype))
    out = np.empty((num_leaves, heads, dim_v), dtype)
    seed = draw_seed() if dropout > 0 else 0
    forward_kernel(*_structure(fam), blocks, *arrays, bias is not None, float(scale),
                   bool(include_self), bool(causal), float(dropout), np.uint64(seed),
                   *state[:9], out, state[9])
    return torch.from_numpy(out), State(state, seed)


def backward(fam: Families, state: State, q: Tensor, k: Tensor, v: Tensor,
             pos: Optional[Tensor], bias: Optional[Tensor], include_self: bool,
             causal: bool, scale: float, dropout: float, grad_out: Tensor):
    r"""Gradients of ``q``, ``k``, ``v``, ``pos`` and ``bias``."""
    _, backward_kernel = _compiled()
    blocks = _blocks()
    arrays = _inputs(q, k, v, pos, bias)
    grad = _array(grad_out.to(q.dtype))
    heads, dim_v = q.size(1), v.size(2)
    n, c = fam.num_internal, fam.ref.numel()
    dtype = arrays[0].dtype
    scratch = (np.empty((n, heads, dim_v), dtype), np.empty((n, heads), dtype),
               np.empty((c, heads), dtype), np.empty((c, heads), dtype))
    g_nodes = tuple(np.empty_like(a) for a in state.arrays[:4])
    grads = tuple(np.empty_like(a) for a in arrays[:3]) + \
        tuple(np.zeros_like(a) for a in arrays[3:])
    backward_kernel(*_structure(fam), blocks, *arrays, bias is not None, float(scale),
                    bool(include_self), bool(causal), float(dropout), np.uint64(state.seed),
                    *state.arrays, grad, *scratch, *g_nodes, *grads)
    g_q, g_k, g_v, g_p, g_b = (torch.from_numpy(a) for a in grads)
    grad_pos = None if pos is None else g_p.view(pos.shape)
    grad_bias = None if bias is None else g_b.view(bias.shape)
    return g_q, g_k, g_v, grad_pos, grad_bias


def _compiled():
    r"""The kernels, compiled on first use (numba imported only then)."""
    if not _KERNELS:
        from hsa_geo.engine import _numba_backward, _numba_common, _numba_forward
        for name, kernel in (('forward', _numba_forward.forward_kernel),
                             ('backward', _numba_backward.backward_kernel)):
            _drop_stale_cache(kernel, _numba_common.__file__)
            _KERNELS[name] = kernel
    return _KERNELS['forward'], _KERNELS['backward']


def _drop_stale_cache(kernel, *inlined: str) -> None:
    r"""numba's on-disk cache of a kernel is keyed on the kernel's own source
    file only, not on the files whose functions it inlines: drop the cache
    when one of those (:obj:`inlined`) changed after it was written (e.g. a
    ``git pull`` that touched only :mod:`~hsa_geo.engine._numba_common`).
    Reads numba's cache index path; if numba stops exposing it, nothing is
    dropped (the kernels then recompile only when their own file changes)."""
    try:
        index = kernel._cache._cache_file._index_path
    except AttributeError:
        return
    if os.path.exists(index) and \
            os.path.getmtime(index) < max(os.path.getmtime(path) for path in inlined):
        kernel._cache.flush()

