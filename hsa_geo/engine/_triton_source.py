r"""The Triton kernels of :mod:`hsa_geo.engine.triton_kernels` (imported by it
on first use, once per ``TRITON_INTERPRET`` mode: ``triton.jit`` decides at
decoration time whether a kernel is compiled or interpreted).

A family's children come from one of two sources: for a class of leaves the
user's ``q``, ``k``, ``v`` (``[L, H, .]``, :math:`\nu` computed on the fly), for
the other classes the head-major node buffer ``[H, rows, D]``.
"""
import triton
import triton.language as tl


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision='ieee')
    return tl.dot(a, b)


@triton.jit
def _children(nodes, stride_h, stride_r, qp, kp, vp, in_s0, in_s1, v_s0, v_s1, scale,
              child_rows, row_ok, h, d, dv, pos, pos_s0, pos_s1, pos_dim, LEAVES: tl.constexpr,
              SELF: tl.constexpr, HAS_POS: tl.constexpr, POS_HEADS: tl.constexpr,
              BD: tl.constexpr, BV: tl.constexpr, BP: tl.constexpr):
    r"""The children's (scaled q, k, v, nu) tiles; zero where ``row_ok`` is
    false (padding, whose row index may point past the inputs)."""
    dims = tl.arange(0, BD)
    vdims = tl.arange(0, BV)
    qmask = row_ok[:, None] & (dims[None, :] < d)
    vmask = row_ok[:, None] & (vdims[None, :] < dv)
    if LEAVES:
        base = child_rows[:, None] * in_s0 + h * in_s1
        q = tl.load(qp + base + dims[None, :], mask=qmask, other=0.0) * scale
        k = tl.load(kp + base + dims[None, :], mask=qmask, other=0.0)
        v = tl.load(vp + child_rows[:, None] * v_s0 + h * v_s1 + vdims[None, :], mask=vmask,
                    other=0.0)
        if SELF:
            nu = tl.sum(q * k, axis=1)
            if HAS_POS:  # the leaf's own position vector
                pdims = tl.arange(0, BP)
                pbase = pos + child_rows[:, None] * pos_s0
                if POS_HEADS:
                    pbase = pbase + h * pos_s1
                p = tl.load(pbase + pdims[None, :],
                            mask=row_ok[:, None] & (pdims[None, :] < pos_dim), other=0.0)
                nu += tl.sum(p * p, axis=1)
            nu = tl.where(row_ok, nu, 0.0)
        else:
            nu = tl.where(row_ok, float('-inf'), 0.0)
    else:
        base = nodes + h * stride_h + child_rows[:, None] * stride_r
        q = tl.load(base + dims[None, :], mask=qmask, other=0.0)
        k = tl.load(base + d + dims[None, :], mask=qmask, other=0.0)
        v = tl.load(base + 2 * d + vdims[None, :], mask=vmask, other=0.0)
        nu = tl.load(nodes + h * stride_h + child_rows * stride_r + 2 * d + dv,
                     mask=row_ok, other=0.0)
    return q, k, v, nu


@triton.jit
def _scores(q, k, rows, cols, h, width, pos, pos_s0, pos_s1, heading, pos_dim, bias,
            bias_s0, bias_s1, pair, log_count, causal: tl.constexpr, HAS_POS: tl.constexpr,
            POS_HEADS: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_HEADS: tl.constexpr,
            BP: tl.constexpr, IEEE: tl.constexpr):
    r"""Sibling scores with the mask and log n(B); a finite dummy on the
    diagonal of rows with nothing to attend, as in the PyTorch path."""
    row_ok = rows < width
    s = _dot(q, tl.trans(k), IEEE)
    if HAS_POS:
        pdims = tl.arange(0, BP)
        nodes_of = tl.load(heading + rows, mask=row_ok, other=0)
        pbase = pos + nodes_of[:, None] * pos_s0
        if POS_HEADS:
            pbase = pbase + h * pos_s1
        p = tl.load(pbase + pdims[None, :], mask=row_ok[:, None] & (pdims[None, :] < pos_dim),
                    other=0.0)
        s += _dot(p, tl.trans(p), IEEE)
    if HAS_BIAS:
        ids = tl.load(pair + rows[:, None] * width + cols[None, :],
                      mask=row_ok[:, None] & (cols[None, :] < width), other=0)
        if BIAS_HEADS:
            s += tl.load(bias + ids * bias_s0 + h * bias_s1)
        else:
            s += tl.load(bias + ids * bias_s0)
    logc = tl.load(log_count + cols, mask=cols < width, other=float('-inf'))
    if causal:
        allowed = (cols[None, :] < rows[:, None]) & (cols[None, :] < width)
    else:
        allowed = (cols[None, :] != rows[:, None]) & (cols[None, :] < width)
    allowed = allowed & (logc[None, :] > float('-inf'))
    s = tl.where(allowed, s + logc[None, :], float('-inf'))
    any_ok = tl.max(tl.where(allowed, 1, 0), axis=1) > 0
    s = tl.where((cols[None, :] == rows[:, None]) & (~any_ok[:, None]), 0.0, s)
    return s, any_ok, allowed


@triton.jit
def _keep(pair, rows, cols, width, seed, dropout, heads, h):
    # the dropout factor of every (row, column) of a family: 1 / (1 - p)
    # where a uniform drawn from the seed and the counter pair id * heads +
    # head is at least p, else 0 (Philox, tl.rand)
    ok = (rows[:, None] < width) & (cols[None, :] < width)
    ids = tl.load(pair + rows[:, None] * width + cols[None, :], mask=ok, other=0)
    u = tl.rand(seed, ids * heads + h)
    return tl.where(u >= dropout, 1.0 / (1.0 - dropout), 0.0)


@triton.jit
def forward_kernel(nodes, stride_h, stride_r, qp, kp, vp, in_s0, in_s1, v_s0, v_s1, scale, child,
                   weight, log_count, log_norm_out, mu_out, one_minus_mu_out, theta_out,
                   parent_start, num_fam, width, d, dv, pos, pos_s0, pos_s1, heading, pos_dim,
                   bias, bias_s0, bias_s1, pair, seed, dropout, heads,
                   causal: tl.constexpr, LEAVES: tl.constexpr,
                   SELF: tl.constexpr, HAS_POS: tl.constexpr, POS_HEADS: tl.constexpr,
                   HAS_BIAS: tl.constexpr, BIAS_HEADS: tl.constexpr, BB: tl.constexpr,
                   BD: tl.constexpr, BV: tl.constexpr, BP: tl.constexpr, IEEE: tl.constexpr,
                   GUARD: tl.constexpr = False, DROP: tl.constexpr = False):
    f = tl.program_id(0)
    h = tl.program_id(1)
    rows = tl.arange(0, BB)
    cols = tl.arange(0, BB)
    row_ok = rows < width
    fam = f * width
    child_rows = tl.load(child + fam + rows, mask=row_ok, other=0)
    w = tl.load(weight + fam + rows, mask=row_ok, other=0.0)
    real = row_ok & (w > 0)       # a child, not padding
    q, k, v, nu = _children(nodes, stride_h, stride_r, qp, kp, vp, in_s0, in_s1, v_s0, v_s1,
                            scale, child_rows, real, h, d, dv, pos, pos_s0, pos_s1, pos_dim,
                            LEAVES, SELF, HAS_POS, POS_HEADS, BD, BV, BP)
    s, any_ok, allowed = _scores(q, k, rows, cols, h, width, pos, pos_s0, pos_s1, heading + fam,
                        pos_dim, bias, bias_s0, bias_s1, pair + fam * width, log_count + fam,
                        causal, HAS_POS, POS_HEADS, HAS_BIAS, BIAS_HEADS, BP, IEEE)
    peak = tl.max(s, axis=1)
    e = tl.exp(s - peak[:, None])
    total = tl.sum(e, axis=1)
    lse = peak + tl.log(total)
    a = e / total[:, None]
    if DROP:  # the kept block weights, scaled; the backward redraws the mask
        a = a * _keep(pair + fam * width, rows, cols, width, seed, dropout, heads, h)
    if GUARD:
        # a non-finite value reaches exactly the rows that attend it: a weight
        # of zero (the diagonal, a masked sibling) takes nothing from it
        bad = ~(tl.abs(v) < float('inf'))
        theta = _dot(a, tl.where(bad, 0.0, v), IEEE)
        reached = _dot(tl.where(allowed, 1.0, 0.0), tl.where(bad, 1.0, 0.0), IEEE)
        theta = tl.where(reached > 0, float('nan'), theta)
    else:
        theta = _dot(a, v, IEEE)
    x = nu - lse
    mu = tl.where(any_ok, tl.sigmoid(x), 1.0)
    one_minus_mu = tl.where(any_ok, tl.sigmoid(-x), 0.0)
    neg_eta = tl.where(any_ok, lse, float('-inf'))
    # t = logaddexp(nu, -eta), the child's share of the parent's nu
    big = tl.maximum(nu, neg_eta)
    # tl.maximum drops a NaN: keep it, so that it reaches the parent's nu
    big = tl.where((nu != nu) | (neg_eta != neg_eta), float('nan'), big)
    finite = big != float('-inf')
    safe = tl.where(finite, big, 0.0)
    total_t = tl.where(finite, tl.exp(nu - safe) + tl.exp(neg_eta - safe), 1.0)
    term = tl.where(finite, safe + tl.log(total_t), float('-inf'))
    vdims = tl.arange(0, BV)
    dims = tl.arange(0, BD)
    out = h * num_fam * width + fam + rows
    tl.store(log_norm_out + out, lse, mask=row_ok)
    tl.store(mu_out + out, mu, mask=row_ok)
    tl.store(one_minus_mu_out + out, one_minus_mu, mask=row_ok)
    tl.store(theta_out + out[:, None] * dv + vdims[None, :], theta,
             mask=row_ok[:, None] & (vdims[None, :] < dv))
    # the parent: n-weighted means of the statistics, and of t for nu
    prow = nodes + h * stride_h + (parent_start + f) * stride_r
    tl.store(prow + dims, tl.sum(w[:, None] * q, axis=0), mask=dims < d)
    tl.store(prow + d + dims, tl.sum(w[:, None] * k, axis=0), mask=dims < d)
    tl.store(prow + 2 * d + vdims, tl.sum(w[:, None] * v, axis=0), mask=vdims < dv)
    tl.store(prow + 2 * d + dv, tl.sum(tl.where(w > 0, w * term, 0.0), axis=0))


@triton.jit
def backward_kernel(nodes, g_nodes, stride_h, stride_r, qp, kp, vp, in_s0, in_s1, v_s0, v_s1, scale,
                    g_out, g_s0, g_s1, child, weight, log_count, log_norm, mu, one_minus_mu, theta,
                    g_acc, dot, g_mass, mass_p, parent_start, num_fam, width, d, dv, pos,
                    pos_s0, pos_s1, heading, pos_dim, g_pos, g_pos_s0, g_pos_s1, bias,
                    bias_s0, bias_s1, pair, g_bias, g_bias_s0, g_bias_s1, seed, dropout,
                    heads, causal: tl.constexpr, LEAVES: tl.constexpr, SELF: tl.constexpr,
                    HAS_POS: tl.constexpr, POS_HEADS: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BIAS_HEADS: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr,
                    BV: tl.constexpr, BP: tl.constexpr, IEEE: tl.constexpr,
                    DROP: tl.constexpr = False):
    f = tl.program_id(0)
    h = tl.program_id(1)
    rows = tl.arange(0, BB)
    cols = tl.arange(0, BB)
    row_ok = rows < width
    fam = f * width
    child_rows = tl.load(child + fam + rows, mask=row_ok, other=0)
    w = tl.load(weight + fam + rows, mask=row_ok, other=0.0)
    real = row_ok & (w > 0)       # a child, not padding
    q, k, v, nu = _children(nodes, stride_h, stride_r, qp, kp, vp, in_s0, in_s1, v_s0, v_s1,
                            scale, child_rows, real, h, d, dv, pos, pos_s0, pos_s1, pos_dim,
                            LEAVES, SELF, HAS_POS, POS_HEADS, BD, BV, BP)
    s, any_ok, allowed = _scores(q, k, rows, cols, h, width, pos, pos_s0, pos_s1, heading + fam,
                        pos_dim, bias, bias_s0, bias_s1, pair + fam * width, log_count + fam,
                        causal, HAS_POS, POS_HEADS, HAS_BIAS, BIAS_HEADS, BP, IEEE)
    piece = h * num_fam * width + fam + rows
    lse = tl.load(log_norm + piece, mask=row_ok, other=0.0)
    a = tl.where(row_ok[:, None], tl.exp(s - lse[:, None]), 0.0)
    vdims = tl.arange(0, BV)
    dims = tl.arange(0, BD)
    vmask = row_ok[:, None] & (vdims[None, :] < dv)
    m = tl.load(mass_p + h * num_fam + f)
    mu_r = tl.load(mu + piece, mask=row_ok, other=1.0)
    one_minus_mu_r = tl.load(one_minus_mu + piece, mask=row_ok, other=0.0)
    ga = tl.load(g_acc + piece[:, None] * dv + vdims[None, :], mask=vmask, other=0.0)
    th = tl.load(theta + piece[:, None] * dv + vdims[None, :], mask=vmask, other=0.0)
    dt = tl.load(dot + piece, mask=row_ok, other=0.0)
    gm = tl.load(g_mass + piece, mask=row_ok, other=0.0)
    g_theta = (m * one_minus_mu_r)[:, None] * ga
    g_a = _dot(g_theta, tl.trans(v), IEEE)
    if DROP:  # the forward's mask, redrawn
        keep = _keep(pair + fam * width, rows, cols, width, seed, dropout, heads, h)
        g_a = g_a * keep
        g_v = _dot(tl.trans(a * keep), g_theta, IEEE)
    else:
        g_v = _dot(tl.trans(a), g_theta, IEEE)
    theta_dot = tl.sum(g_theta * th, axis=1)
    g_x = m * mu_r * one_minus_mu_r * (gm - dt)
    neg_eta = tl.where(any_ok, lse, float('-inf'))
    # the parent's gradient, shared by its children as n(C)/n(P)
    prow = g_nodes + h * stride_h + (parent_start + f) * stride_r
    gp_q = tl.load(prow + dims, mask=dims < d, other=0.0)
    gp_k = tl.load(prow + d + dims, mask=dims < d, other=0.0)
    gp_v = tl.load(prow + 2 * d + vdims, mask=vdims < dv, other=0.0)
    gp_nu = tl.load(prow + 2 * d + dv)
    g_term = w * gp_nu
    # t = logaddexp(nu, -eta); structural infinities get no gradient
    nu_inf = nu == float('-inf')
    eta_inf = neg_eta == float('-inf')
    nu_f = tl.where(nu_inf, 0.0, nu)
    eta_f = tl.where(eta_inf, 0.0, neg_eta)
    d_nu = tl.where(nu_inf, 0.0, tl.where(eta_inf, 1.0, tl.sigmoid(nu_f - eta_f)))
    d_eta = tl.where(eta_inf, 0.0, tl.where(nu_inf, 1.0, tl.sigmoid(eta_f - nu_f)))
    g_lse = -g_x + g_term * d_eta
    g_nu = g_x + g_term * d_nu
    g_s = a * (g_a - theta_dot[:, None] + g_lse[:, None])
    g_q = _dot(g_s, k, IEEE) + w[:, None] * gp_q[None, :]
    g_k = _dot(tl.trans(g_s), q, IEEE) + w[:, None] * gp_k[None, :]
    g_v = g_v + w[:, None] * gp_v[None, :]
    # the children's statistics gradient: leaves into [L, H, D], others into g_nodes
    if LEAVES:
        out = g_out + child_rows[:, None] * g_s0 + h * g_s1
        out_nu = g_out + child_rows * g_s0 + h * g_s1 + 2 * d + dv
    else:
        out = g_nodes + h * stride_h + child_rows[:, None] * stride_r
        out_nu = g_nodes + h * stride_h + child_rows * stride_r + 2 * d + dv
    qmask = real[:, None] & (dims[None, :] < d)
    tl.store(out + dims[None, :], g_q, mask=qmask)
    tl.store(out + d + dims[None, :], g_k, mask=qmask)
    tl.store(out + 2 * d + vdims[None, :], g_v, mask=real[:, None] & (vdims[None, :] < dv))
    tl.store(out_nu, g_nu, mask=real)
    if HAS_POS:
        pdims = tl.arange(0, BP)
        nodes_of = tl.load(heading + fam + rows, mask=row_ok, other=0)
        pbase = pos + nodes_of[:, None] * pos_s0
        if POS_HEADS:
            pbase = pbase + h * pos_s1
        pmask = row_ok[:, None] & (pdims[None, :] < pos_dim)
        p = tl.load(pbase + pdims[None, :], mask=pmask, other=0.0)
        g_p = _dot(g_s + tl.trans(g_s), p, IEEE)
        gbase = g_pos + nodes_of[:, None] * g_pos_s0
        if POS_HEADS:
            gbase = gbase + h * g_pos_s1
        tl.atomic_add(gbase + pdims[None, :], g_p, mask=pmask)
    if HAS_BIAS:
        bmask = row_ok[:, None] & (cols[None, :] < width)
        ids = tl.load(pair + fam * width + rows[:, None] * width + cols[None, :], mask=bmask,
                      other=0)
        if BIAS_HEADS:
            tl.atomic_add(g_bias + ids * g_bias_s0 + h * g_bias_s1, g_s, mask=bmask)
        else:
            tl.atomic_add(g_bias + ids * g_bias_s0, g_s, mask=bmask)
