r"""The numba source of :mod:`hsa_geo.engine.numba_kernels` (imported only
when a kernel first runs, so that importing hsa_geo never needs numba).

Argument names follow :class:`~hsa_geo.engine.families.Families`; a child
``c`` of family ``f`` is ``child_ptr[f] + i``, its ref ``ref[c]`` is a leaf
below ``L`` and internal node ``ref[c] - L`` above.  Positions come as
``[nodes, 1 or H, c]`` and the bias as ``[pairs, 1 or H]`` (one compiled
signature per dtype).  Fast-math is limited to reassociation and fused
multiply-adds: NaN and infinities keep their meaning.
"""
import numpy as np
from numba import njit, prange

_FAST = {'reassoc', 'contract'}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0   # 2 ** -53
#: Families at least this wide compute a row's scores vectorised over the
#: siblings (keys transposed), narrower ones over the channels.
_WIDE = 16


@njit(cache=True, inline='always')
def _uniform(seed, counter):
    r"""splitmix64 of ``seed + counter * golden``, as a uniform in [0, 1)."""
    z = seed + np.uint64(counter) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline='always')
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True, inline='always')
def _logaddexp(a, b):
    if a != a or b != b:
        return a + b
    if a == b:                      # also both -inf or both +inf
        return a + np.log(2.0)
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(cache=True, inline='always')
def _pair(pair0, b, i, j):
    return pair0 + i * (b - 1) + (j if j < i else j - 1)


@njit(cache=True, fastmath=_FAST, error_model='numpy', inline='always')
def _gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
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


@njit(cache=True, fastmath=_FAST, error_model='numpy', inline='always')
def _row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias, has_bias,
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
            e += bias[_pair(pair0, b, i, j), bh]
        E[j] = e
        if e > m:
            m = e
    return m


@njit(cache=True, inline='always')
def _cut(lo, hi, blocks, x):
    r"""The start of block ``x`` of ``blocks`` equal blocks of ``lo:hi``."""
    return lo + (hi - lo) * x // blocks


@njit(cache=True, inline='always')
def _widest(child_ptr, f_lo, f_hi):
    w = 1
    for f in range(f_lo, f_hi):
        w = max(w, child_ptr[f + 1] - child_ptr[f])
    return w


@njit(cache=True, fastmath=_FAST, error_model='numpy')
def _families_forward(f_lo, f_hi, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                      q, k, v, p, bias, has_bias, scale, include_self, causal, dropout, seed,
                      nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta):
    r"""The families ``f_lo:f_hi`` of one level, with one set of scratch
    blocks sized to the widest of them."""
    H = q.shape[1]
    d = q.shape[2]
    dv = v.shape[2]
    cp = p.shape[2]
    width = _widest(child_ptr, f_lo, f_hi)
    Q = np.empty((width, d), q.dtype)
    K = np.empty((width, d), q.dtype)
    V = np.empty((width, dv), q.dtype)
    NU = np.empty(width, np.float64)
    PS = np.empty((width, cp), q.dtype)
    KT = np.empty((d, width), q.dtype)
    PT = np.empty((cp, width), q.dtype)
    S = np.empty(width, q.dtype)
    E = np.empty(width, np.float64)
    th = np.empty(dv, np.float64)
    aq = np.empty(d, np.float64)
    ak = np.empty(d, np.float64)
    av = np.empty(dv, np.float64)
    keep_scale = 1.0 / (1.0 - dropout)
    for f in range(f_lo, f_hi):
        c0 = child_ptr[f]
        b = child_ptr[f + 1] - c0
        par = parent[f]
        pair0 = pair_ptr[f]
        for h in range(H):
            _gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
                    Q, K, V, NU, PS, KT, PT)
            bh = h if bias.shape[1] > 1 else 0
            aq[:] = 0.0
            ak[:] = 0.0
            av[:] = 0.0
            anu = 0.0
            for i in range(b):
                c = c0 + i
                hi = i if causal else b
                found = i > 0 if causal else b > 1
                m = _row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias,
                                has_bias, bh)
                th[:] = 0.0
                if found:
                    total = 0.0
                    for j in range(hi):
                        if j != i:
                            e = np.exp(E[j] - m)
                            E[j] = e
                            total += e
                    ln = m + np.log(total)
                    inv = 1.0 / total
                    for j in range(hi):
                        if j == i:
                            continue
                        a = E[j] * inv
                        if dropout > 0.0:
                            u = _uniform(seed, _pair(pair0, b, i, j) * H + h)
                            a = a * (0.0 if u < dropout else keep_scale)
                        for t in range(dv):
                            th[t] += a * V[j, t]
                    x = NU[i] - ln
                    mu_i = _sigmoid(x)
                    omu_i = _sigmoid(-x)
                    neg_eta = ln
                else:                   # no sibling: eta = +inf, mu = 1
                    ln = 0.0
                    mu_i = 1.0
                    omu_i = 0.0
                    neg_eta = -np.inf
                log_norm[c, h] = ln
                mu[c, h] = mu_i
                one_minus_mu[c, h] = omu_i
                for t in range(dv):
                    theta[c, h, t] = th[t]
                w = weight[c]
                for t in range(d):
                    aq[t] += w * Q[i, t]
                    ak[t] += w * K[i, t]
                for t in range(dv):
                    av[t] += w * V[i, t]
                anu += w * _logaddexp(NU[i], neg_eta)
            for t in range(d):
                nq[par, h, t] = aq[t]
                nk[par, h, t] = ak[t]
            for t in range(dv):
                nv[par, h, t] = av[t]
            nnu[par, h] = anu


@njit(parallel=True, cache=True, fastmath=_FAST, error_model='numpy')
def forward_kernel(level_ptr, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                   root_nodes, root_leaves, blocks, q, k, v, p, bias, has_bias, scale,
                   include_self, causal, dropout, seed, nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta,
                   mass, out, leaf_mass):
    L = q.shape[0]
    H = q.shape[1]
    dv = v.shape[2]
    levels = level_ptr.shape[0] - 1
    # bottom-up
    for lev in range(levels):
        lo, hi = level_ptr[lev], level_ptr[lev + 1]
        for x in prange(blocks):
            _families_forward(_cut(lo, hi, blocks, x), _cut(lo, hi, blocks, x + 1), parent,
                              child_ptr, pair_ptr, ref, node, weight, log_count, q, k, v, p,
                              bias, has_bias, scale, include_self, causal, dropout, seed,
                              nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta)
    # top-down
    acc = np.empty((nq.shape[0], H, dv), q.dtype)
    for x in range(root_nodes.shape[0]):
        n = root_nodes[x]
        for h in range(H):
            mass[n, h] = 1.0
            for t in range(dv):
                acc[n, h, t] = 0.0
    for x in range(root_leaves.shape[0]):
        r = root_leaves[x]
        for h in range(H):
            leaf_mass[r, h] = 1.0
            for t in range(dv):
                out[r, h, t] = v[r, h, t] if include_self else 0.0
    for lev in range(levels - 1, -1, -1):
        for f in prange(level_ptr[lev], level_ptr[lev + 1]):
            par = parent[f]
            for c in range(child_ptr[f], child_ptr[f + 1]):
                r = ref[c]
                for h in range(H):
                    mp = mass[par, h]
                    share = mp * one_minus_mu[c, h]
                    # a weight of exactly zero passes nothing on, not even a NaN
                    cm = mp * mu[c, h] if mp != 0.0 else 0.0
                    if r < L:
                        leaf_mass[r, h] = cm
                        for t in range(dv):
                            o = acc[par, h, t]
                            if share != 0.0:
                                o += share * theta[c, h, t]
                            if include_self:
                                o += cm * v[r, h, t]
                            out[r, h, t] = o
                    else:
                        n = r - L
                        mass[n, h] = cm
                        for t in range(dv):
                            o = acc[par, h, t]
                            if share != 0.0:
                                o += share * theta[c, h, t]
                            acc[n, h, t] = o


@njit(cache=True, fastmath=_FAST, error_model='numpy')
def _families_backward(f_lo, f_hi, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                       q, k, v, p, bias, has_bias, scale, include_self, causal, dropout, seed,
                       nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta, mass, leaf_mass,
                       grad_out, g_acc, dot, gm, gq_n, gk_n, gv_n, gnu_n, g_q, g_k, g_v, g_p,
                       g_b):
    r"""Pass 2 for the families ``f_lo:f_hi`` of one level, with one set of
    scratch blocks sized to the widest of them."""
    L = q.shape[0]
    H = q.shape[1]
    d = q.shape[2]
    dv = v.shape[2]
    cp = p.shape[2]
    width = _widest(child_ptr, f_lo, f_hi)
    Q = np.empty((width, d), q.dtype)
    K = np.empty((width, d), q.dtype)
    V = np.empty((width, dv), q.dtype)
    NU = np.empty(width, np.float64)
    PS = np.empty((width, cp), q.dtype)
    KT = np.empty((d, width), q.dtype)
    PT = np.empty((cp, width), q.dtype)
    S = np.empty(width, q.dtype)
    E = np.empty(width, np.float64)
    GQ = np.empty((width, d), np.float64)
    GK = np.empty((width, d), np.float64)
    GV = np.empty((width, dv), np.float64)
    GP = np.empty((width, cp), np.float64)
    GNU = np.empty(width, np.float64)
    gth = np.empty(dv, np.float64)
    keep_scale = 1.0 / (1.0 - dropout)
    for f in range(f_lo, f_hi):
        c0 = child_ptr[f]
        b = child_ptr[f + 1] - c0
        par = parent[f]
        pair0 = pair_ptr[f]
        for h in range(H):
            _gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
                    Q, K, V, NU, PS, KT, PT)
            bh = h if bias.shape[1] > 1 else 0
            ph = h if p.shape[1] > 1 else 0
            mp = mass[par, h]
            g_par_nu = gnu_n[par, h]
            # the means' share: n(C)/n(P) of the parent's gradient
            for i in range(b):
                w = weight[c0 + i]
                for t in range(d):
                    GQ[i, t] = w * gq_n[par, h, t]
                    GK[i, t] = w * gk_n[par, h, t]
                for t in range(dv):
                    GV[i, t] = w * gv_n[par, h, t]
                for t in range(cp):
                    GP[i, t] = 0.0
            for i in range(b):
                c = c0 + i
                r = ref[c]
                mu_i = mu[c, h]
                omu_i = one_minus_mu[c, h]
                theta_dot = 0.0
                for t in range(dv):
                    ga = grad_out[r, h, t] if r < L else g_acc[r - L, h, t]
                    gth[t] = mp * omu_i * ga
                    theta_dot += gth[t] * theta[c, h, t]
                g_x = mp * mu_i * omu_i * (gm[c, h] - dot[c, h])
                ln = log_norm[c, h]
                hi = i if causal else b
                empty = i == 0 if causal else b == 1
                neg_eta = -np.inf if empty else ln
                g_term = weight[c] * g_par_nu
                # t = logaddexp(nu, -eta); a structural infinity gets no gradient
                d_nu = _sigmoid(NU[i] - neg_eta)
                if d_nu != d_nu:
                    d_nu = 0.0
                d_neg_eta = _sigmoid(neg_eta - NU[i])
                if d_neg_eta != d_neg_eta:
                    d_neg_eta = 0.0
                g_ln = -g_x + g_term * d_neg_eta
                GNU[i] = g_x + g_term * d_nu
                if empty:
                    continue
                _row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias,
                            has_bias, bh)
                for j in range(hi):
                    if j == i:
                        continue
                    pair = _pair(pair0, b, i, j)
                    a = np.exp(E[j] - ln)
                    kf = 1.0
                    if dropout > 0.0:
                        kf = 0.0 if _uniform(seed, pair * H + h) < dropout else keep_scale
                    g_a = 0.0
                    ak = a * kf
                    for t in range(dv):
                        g_a += gth[t] * V[j, t]
                        GV[j, t] += ak * gth[t]
                    gs = a * (kf * g_a - theta_dot + g_ln)
                    for t in range(d):
                        GQ[i, t] += gs * K[j, t]
                        GK[j, t] += gs * Q[i, t]
                    for t in range(cp):
                        GP[i, t] += gs * PS[j, t]
                        GP[j, t] += gs * PS[i, t]
                    if has_bias:
                        g_b[pair, bh] += gs
            for i in range(b):
                c = c0 + i
                r = ref[c]
                nd = node[c]
                for t in range(cp):
                    g_p[nd, ph, t] += GP[i, t]
                if r < L:
                    for t in range(d):
                        g_q[r, h, t] = scale * GQ[i, t]
                        g_k[r, h, t] = GK[i, t]
                    for t in range(dv):
                        g_v[r, h, t] = GV[i, t]
                    if include_self:   # nu(i) = scale q.k + pos.pos; out gains m(i) v_i
                        gn = GNU[i]
                        for t in range(d):
                            g_q[r, h, t] += gn * scale * k[r, h, t]
                            g_k[r, h, t] += gn * scale * q[r, h, t]
                        lm = leaf_mass[r, h]
                        for t in range(dv):
                            g_v[r, h, t] += lm * grad_out[r, h, t]
                        for t in range(cp):
                            g_p[r, ph, t] += 2.0 * gn * p[r, ph, t]
                else:
                    n = r - L
                    for t in range(d):
                        gq_n[n, h, t] = GQ[i, t]
                        gk_n[n, h, t] = GK[i, t]
                    for t in range(dv):
                        gv_n[n, h, t] = GV[i, t]
                    gnu_n[n, h] = GNU[i]


@njit(parallel=True, cache=True, fastmath=_FAST, error_model='numpy')
def backward_kernel(level_ptr, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                    root_nodes, root_leaves, blocks, q, k, v, p, bias, has_bias, scale,
                    include_self, causal, dropout, seed, nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta,
                    mass, leaf_mass, grad_out, g_acc, g_mass, dot, gm, gq_n, gk_n, gv_n, gnu_n,
                    g_q, g_k, g_v, g_p, g_b):
    L = q.shape[0]
    H = q.shape[1]
    d = q.shape[2]
    dv = v.shape[2]
    levels = level_ptr.shape[0] - 1
    # pass 1, bottom-up: the gradients of every node's accumulated output and
    # mass, and per child d(C) = g_acc(C) . theta(C) and g_m(C)
    for lev in range(levels):
        for f in prange(level_ptr[lev], level_ptr[lev + 1]):
            par = parent[f]
            total = np.empty(dv, np.float64)
            for h in range(H):
                total[:] = 0.0
                mass_total = 0.0
                for c in range(child_ptr[f], child_ptr[f + 1]):
                    r = ref[c]
                    dt = 0.0
                    g = 0.0
                    if r < L:
                        for t in range(dv):
                            ga = grad_out[r, h, t]
                            dt += ga * theta[c, h, t]
                            total[t] += ga
                            if include_self:
                                g += ga * v[r, h, t]
                    else:
                        n = r - L
                        for t in range(dv):
                            ga = g_acc[n, h, t]
                            dt += ga * theta[c, h, t]
                            total[t] += ga
                        g = g_mass[n, h]
                    dot[c, h] = dt
                    gm[c, h] = g
                    mass_total += mu[c, h] * g + one_minus_mu[c, h] * dt
                for t in range(dv):
                    g_acc[par, h, t] = total[t]
                g_mass[par, h] = mass_total
    # roots: statistics used by no one; a lone leaf's output is its own value
    for x in range(root_nodes.shape[0]):
        n = root_nodes[x]
        for h in range(H):
            for t in range(d):
                gq_n[n, h, t] = 0.0
                gk_n[n, h, t] = 0.0
            for t in range(dv):
                gv_n[n, h, t] = 0.0
            gnu_n[n, h] = 0.0
    for x in range(root_leaves.shape[0]):
        r = root_leaves[x]
        for h in range(H):
            for t in range(d):
                g_q[r, h, t] = 0.0
                g_k[r, h, t] = 0.0
            for t in range(dv):
                g_v[r, h, t] = grad_out[r, h, t] if include_self else 0.0
    # pass 2, top-down: the gradients of the statistics
    for lev in range(levels - 1, -1, -1):
        lo, hi = level_ptr[lev], level_ptr[lev + 1]
        for x in prange(blocks):
            _families_backward(_cut(lo, hi, blocks, x), _cut(lo, hi, blocks, x + 1), parent,
                               child_ptr, pair_ptr, ref, node, weight, log_count, q, k, v, p,
                               bias, has_bias, scale, include_self, causal, dropout, seed,
                               nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta, mass,
                               leaf_mass, grad_out, g_acc, dot, gm, gq_n, gk_n, gv_n, gnu_n,
                               g_q, g_k, g_v, g_p, g_b)
