r"""The forward kernel of the fused CPU path
(:mod:`hsa_geo.engine.numba_kernels`): the bottom-up pass, level by level in
parallel over families, then the top-down pass, in one compiled call.  Names
as in :mod:`~hsa_geo.engine._numba_common`."""
import numpy as np
from numba import njit, prange

from hsa_geo.engine._numba_common import (
    FAST,
    cut,
    family_scratch,
    gather,
    logaddexp,
    pair_id,
    row_scores,
    sigmoid,
    uniform,
    widest,
)


@njit(cache=True, fastmath=FAST, error_model='numpy')
def _families_forward(f_lo, f_hi, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                      q, k, v, p, bias, has_bias, scale, include_self, causal, dropout, seed,
                      nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta):
    r"""The families ``f_lo:f_hi`` of one level, with one set of scratch
    blocks sized to the widest of them."""
    H = q.shape[1]
    d = q.shape[2]
    dv = v.shape[2]
    cp = p.shape[2]
    width = widest(child_ptr, f_lo, f_hi)
    Q, K, V, NU, PS, KT, PT, S, E = family_scratch(width, d, dv, cp, q.dtype)
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
            gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
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
                m = row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias,
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
                            u = uniform(seed, pair_id(pair0, b, i, j) * H + h)
                            a = a * (0.0 if u < dropout else keep_scale)
                        for t in range(dv):
                            th[t] += a * V[j, t]
                    x = NU[i] - ln
                    mu_i = sigmoid(x)
                    omu_i = sigmoid(-x)
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
                anu += w * logaddexp(NU[i], neg_eta)
            for t in range(d):
                nq[par, h, t] = aq[t]
                nk[par, h, t] = ak[t]
            for t in range(dv):
                nv[par, h, t] = av[t]
            nnu[par, h] = anu


@njit(parallel=True, cache=True, fastmath=FAST, error_model='numpy')
def forward_kernel(level_ptr, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                   root_nodes, root_leaves, blocks, q, k, v, p, bias, has_bias, scale,
                   include_self, causal, dropout, seed, nq, nk, nv, nnu, log_norm, mu,
                   one_minus_mu, theta, mass, out, leaf_mass):
    L = q.shape[0]
    H = q.shape[1]
    dv = v.shape[2]
    levels = level_ptr.shape[0] - 1
    # bottom-up
    for lev in range(levels):
        lo, hi = level_ptr[lev], level_ptr[lev + 1]
        for x in prange(blocks):
            _families_forward(cut(lo, hi, blocks, x), cut(lo, hi, blocks, x + 1), parent,
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
