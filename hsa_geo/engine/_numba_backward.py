r"""The backward kernel of the fused CPU path
(:mod:`hsa_geo.engine.numba_kernels`): the gradients of the top-down pass,
then of the bottom-up pass, level by level in parallel over families, in one
compiled call.  Names as in :mod:`~hsa_geo.engine._numba_common`."""
import numpy as np
from numba import njit, prange

from hsa_geo.engine._numba_common import (
    FAST,
    cut,
    family_scratch,
    gather,
    pair_id,
    row_scores,
    sigmoid,
    uniform,
    widest,
)


@njit(cache=True, fastmath=FAST, error_model='numpy')
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
    width = widest(child_ptr, f_lo, f_hi)
    Q, K, V, NU, PS, KT, PT, S, E = family_scratch(width, d, dv, cp, q.dtype)
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
            gather(c0, b, h, ref, node, q, k, v, p, scale, include_self, nq, nk, nv, nnu,
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
                d_nu = sigmoid(NU[i] - neg_eta)
                if d_nu != d_nu:
                    d_nu = 0.0
                d_neg_eta = sigmoid(neg_eta - NU[i])
                if d_neg_eta != d_neg_eta:
                    d_neg_eta = 0.0
                g_ln = -g_x + g_term * d_neg_eta
                GNU[i] = g_x + g_term * d_nu
                if empty:
                    continue
                row_scores(i, hi, c0, pair0, b, Q, K, KT, PS, PT, S, E, log_count, bias,
                            has_bias, bh)
                for j in range(hi):
                    if j == i:
                        continue
                    pair = pair_id(pair0, b, i, j)
                    a = np.exp(E[j] - ln)
                    kf = 1.0
                    if dropout > 0.0:
                        kf = 0.0 if uniform(seed, pair * H + h) < dropout else keep_scale
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


@njit(parallel=True, cache=True, fastmath=FAST, error_model='numpy')
def backward_kernel(level_ptr, parent, child_ptr, pair_ptr, ref, node, weight, log_count,
                    root_nodes, root_leaves, blocks, q, k, v, p, bias, has_bias, scale,
                    include_self, causal, dropout, seed, nq, nk, nv, nnu, log_norm, mu,
                    one_minus_mu, theta, mass, leaf_mass, grad_out, g_acc, g_mass, dot, gm,
                    gq_n, gk_n, gv_n, gnu_n, g_q, g_k, g_v, g_p, g_b):
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
            _families_backward(cut(lo, hi, blocks, x), cut(lo, hi, blocks, x + 1), parent,
                               child_ptr, pair_ptr, ref, node, weight, log_count, q, k, v, p,
                               bias, has_bias, scale, include_self, causal, dropout, seed,
                               nq, nk, nv, nnu, log_norm, mu, one_minus_mu, theta, mass,
                               leaf_mass, grad_out, g_acc, dot, gm, gq_n, gk_n, gv_n, gnu_n,
                               g_q, g_k, g_v, g_p, g_b)
