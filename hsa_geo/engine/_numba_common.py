r"""What the numba kernels of :mod:`hsa_geo.engine.numba_kernels` share: the
counter-based random numbers of dropout, the numerics, and a family's
gathered inputs and score rows (imported only when a kernel first runs, so
that importing hsa_geo never needs numba; the forward kernel is in
:mod:`~hsa_geo.engine._numba_forward`, the backward kernel in
:mod:`~hsa_geo.engine._numba_backward`).

Argument names follow :class:`~hsa_geo.engine.families.Families`; a child
``c`` of family ``f`` is ``child_ptr[f] + i``, its ref ``ref[c]`` is a leaf
below ``L`` and internal node ``ref[c] - L`` above.  Positions come as
``[nodes, 1 or H, c]`` and the bias as ``[pairs, 1 or H]`` (one compiled
signature per dtype).  Fast-math is limited to reassociation and fused
multiply-adds: NaN and infinities keep their meaning.
"""
import numpy as np
from numba import njit

FAST = {'reassoc', 'contract'}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0   # 2 ** -53
#: Families at least this wide compute a row's scores vectorised over the
#: siblings (keys transposed), narrower ones over the channels.
_WIDE = 16


@njit(cache=True, inline='always')
def uniform(seed, counter):
    r"""splitmix64 of ``seed + counter * golden``, as a uniform in [0, 1)."""
    z = seed + np.uint64(counter) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline='always')
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True, inline='always')
def logaddexp(a, b):
    if a != a or b != b:
        return a + b
    if a == b:                      # also both -inf or both +inf
        return a + np.log(2.0)
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(cache=True, inline='always')
def pair_id(pair0, b, i, j):
    return pair0 + i * (b - 1) + (j if j < i else j - 1)


@njit(cache=True, fastmath=FAST, error_model='numpy', inline='always')
def gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
            Q, K, V, NU, PS, KT, PT):
    r"""The children's rows of one family and head: scaled query means,
    key and value means, :math:`\nu`, positions; keys and positions also
    transposed (``KT [d, b]``, ``PT [c, b]``) so that a row's scores are
    products vectorised over its siblings."""
    L = q.shape[0]
    d = q.shape[2]
    dv = v.shape[2]
    cp = p.shape[2]
    ph = h if p.shape[1] > 1 else 0
    for i in range(b):
        r = ref[c0 + i]
        if r < L:
            s = 0.0
            for t in range(d):
                Q[i, t] = q[r, h, t] * scale
                K[i, t] = k[r, h, t]
                s += q[r, h, t] * k[r, h, t]
            for t in range(dv):
                V[i, t] = v[r, h, t]
            if include_self:       # nu(i) = s(i, i)
                s = s * scale
                for t in range(cp):
                    s += p[r, ph, t] * p[r, ph, t]
                NU[i] = s
            else:
                NU[i] = -np.inf
        else:
            n = r - L
            for t in range(d):
                Q[i, t] = nq[n, h, t]
                K[i, t] = nk[n, h, t]
            for t in range(dv):
                V[i, t] = nv[n, h, t]
            NU[i] = nnu[n, h]
        nd = node[c0 + i]
        for t in range(cp):
            PS[i, t] = p[nd, ph, t]
            PT[t, i] = p[nd, ph, t]
        if b >= _WIDE:
            for t in range(d):
                KT[t, i] = K[i, t]


@njit(cache=True, fastmath=FAST, error_model='numpy', inline='always')
def row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias, has_bias,
                bh):
    r"""``E[j] = s(i, j)`` for the siblings ``j < hi`` of row ``i`` (in the
    inputs' dtype, as a GEMM would, then float64 with the count and bias
    terms); returns the row's maximum (``-inf`` without siblings)."""
    if b >= _WIDE:   # products vectorised over the siblings
        for j in range(hi):
            S[j] = 0.0
        for t in range(Q.shape[1]):
            x = Q[i, t]
            for j in range(hi):
                S[j] += x * KT[t, j]
        for t in range(PS.shape[1]):
            x = PS[i, t]
            for j in range(hi):
                S[j] += x * PT[t, j]
    else:            # a few siblings: dot products vectorised over channels
        for j in range(hi):
            x = Q[i, 0] * K[j, 0]
            for t in range(1, Q.shape[1]):
                x += Q[i, t] * K[j, t]
            for t in range(PS.shape[1]):
                x += PS[i, t] * PS[j, t]
            S[j] = x
    m = -np.inf
    for j in range(hi):
        if j == i:
            continue
        e = S[j] + log_count[c0 + j]
        if has_bias:
            e += bias[pair_id(pair0, b, i, j), bh]
        E[j] = e
        if e > m:
            m = e
    return m


@njit(cache=True, inline='always')
def cut(lo, hi, blocks, x):
    r"""The start of block ``x`` of ``blocks`` equal blocks of ``lo:hi``."""
    return lo + (hi - lo) * x // blocks


@njit(cache=True, inline='always')
def family_scratch(width, d, dv, cp, dtype):
    r"""The blocks both passes gather one family into (allocated once per
    block of families, for its widest): queries, keys, values, :math:`\nu`,
    positions, keys and positions transposed, a row's scores and weights."""
    return (np.empty((width, d), dtype), np.empty((width, d), dtype),
            np.empty((width, dv), dtype), np.empty(width, np.float64),
            np.empty((width, cp), dtype), np.empty((d, width), dtype),
            np.empty((cp, width), dtype), np.empty(width, dtype), np.empty(width, np.float64))


@njit(cache=True, inline='always')
def widest(child_ptr, f_lo, f_hi):
    w = 1
    for f in range(f_lo, f_hi):
        w = max(w, child_ptr[f + 1] - child_ptr[f])
    return w
