r"""The Triton kernels of :mod:`hsa_geo.engine.triton_kernels` (imported by it
on first use, once per ``TRITON_INTERPRET`` mode: ``triton.jit`` decides at
decoration time whether a kernel is compiled or interpreted)."""
import triton
import triton.language as tl


@triton.jit
def _scores(nodes, stride_h, stride_r, child_rows, rows, cols, h, width,
            q_off, k_off, d, pos, pos_s0, pos_s1, heading, pos_dim, bias, bias_s0,
            bias_s1, pair, log_count, causal: tl.constexpr, HAS_POS: tl.constexpr,
            POS_HEADS: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_HEADS: tl.constexpr,
            BD: tl.constexpr, BP: tl.constexpr, IEEE: tl.constexpr):
    dims = tl.arange(0, BD)
    row_ok = rows < width
    base = nodes + h * stride_h + child_rows[:, None] * stride_r
    q = tl.load(base + q_off + dims[None, :], mask=row_ok[:, None] & (dims[None, :] < d),
                other=0.0)
    k = tl.load(base + k_off + dims[None, :], mask=row_ok[:, None] & (dims[None, :] < d),
                other=0.0)
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision='ieee')
    else:
        s = tl.dot(q, tl.trans(k))
    if HAS_POS:
        pdims = tl.arange(0, BP)
        nodes_of = tl.load(heading + rows, mask=row_ok, other=0)
        pbase = pos + nodes_of[:, None] * pos_s0
        if POS_HEADS:
            pbase = pbase + h * pos_s1
        p = tl.load(pbase + pdims[None, :], mask=row_ok[:, None] & (pdims[None, :] < pos_dim),
                    other=0.0)
        if IEEE:
            s += tl.dot(p, tl.trans(p), input_precision='ieee')
        else:
            s += tl.dot(p, tl.trans(p))
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
    # rows with nothing to attend (the first child under causal; padding)
    # get a finite dummy on the diagonal, as in the PyTorch path
    any_ok = tl.max(tl.where(allowed, 1, 0), axis=1) > 0
    s = tl.where((cols[None, :] == rows[:, None]) & (~any_ok[:, None]), 0.0, s)
    return s, q, k, any_ok

@triton.jit
def forward_kernel(nodes, stride_h, stride_r, child, weight, log_count, log_norm_out,
                   mu_out, omm_out, theta_out, parent_start, num_fam, width, d, dv,
                   pos, pos_s0, pos_s1, heading, pos_dim, bias, bias_s0, bias_s1, pair,
                   causal: tl.constexpr, HAS_POS: tl.constexpr, POS_HEADS: tl.constexpr,
                   HAS_BIAS: tl.constexpr, BIAS_HEADS: tl.constexpr, BB: tl.constexpr,
                   BD: tl.constexpr, BV: tl.constexpr, BP: tl.constexpr,
                   IEEE: tl.constexpr):
    f = tl.program_id(0)
    h = tl.program_id(1)
    rows = tl.arange(0, BB)
    cols = tl.arange(0, BB)
    row_ok = rows < width
    fam = f * width
    child_rows = tl.load(child + fam + rows, mask=row_ok, other=0)
    s, q, k, any_ok = _scores(nodes, stride_h, stride_r, child_rows, rows, cols, h, width,
                              0, d, d, pos, pos_s0, pos_s1, heading + fam, pos_dim, bias,
                              bias_s0, bias_s1, pair + fam * width,
                              log_count + fam, causal, HAS_POS, POS_HEADS, HAS_BIAS,
                              BIAS_HEADS, BD, BP, IEEE)
    peak = tl.max(s, axis=1)
    e = tl.exp(s - peak[:, None])
    total = tl.sum(e, axis=1)
    lse = peak + tl.log(total)
    a = e / total[:, None]
    vdims = tl.arange(0, BV)
    base = nodes + h * stride_h + child_rows[:, None] * stride_r
    vmask = row_ok[:, None] & (vdims[None, :] < dv)
    v = tl.load(base + 2 * d + vdims[None, :], mask=vmask, other=0.0)
    if IEEE:
        theta = tl.dot(a, v, input_precision='ieee')
    else:
        theta = tl.dot(a, v)
    nu = tl.load(nodes + h * stride_h + child_rows * stride_r + 2 * d + dv,
                 mask=row_ok, other=0.0)
    x = nu - lse
    mu = tl.where(any_ok, tl.sigmoid(x), 1.0)
    omm = tl.where(any_ok, tl.sigmoid(-x), 0.0)
    neg_eta = tl.where(any_ok, lse, float('-inf'))
    big = tl.maximum(nu, neg_eta)
    safe = tl.where(big > float('-inf'), big, 0.0)
    finite = big > float('-inf')
    total_t = tl.where(finite, tl.exp(nu - safe) + tl.exp(neg_eta - safe), 1.0)
    term = tl.where(finite, safe + tl.log(total_t), float('-inf'))
    w = tl.load(weight + fam + rows, mask=row_ok, other=0.0)
    out = h * num_fam * width + fam + rows
    tl.store(log_norm_out + out, lse, mask=row_ok)
    tl.store(mu_out + out, mu, mask=row_ok)
    tl.store(omm_out + out, omm, mask=row_ok)
    tl.store(theta_out + out[:, None] * dv + vdims[None, :], theta, mask=vmask)
    # the parent: n-weighted means of the statistics, and of t for nu
    dims = tl.arange(0, BD)
    prow = nodes + h * stride_h + (parent_start + f) * stride_r
    tl.store(prow + dims, tl.sum(w[:, None] * q, axis=0), mask=dims < d)
    tl.store(prow + d + dims, tl.sum(w[:, None] * k, axis=0), mask=dims < d)
    tl.store(prow + 2 * d + vdims, tl.sum(w[:, None] * v, axis=0), mask=vdims < dv)
    tl.store(prow + 2 * d + dv, tl.sum(tl.where(w > 0, w * term, 0.0), axis=0))

@triton.jit
def backward_kernel(nodes, g_nodes, stride_h, stride_r, child, weight, log_count,
                    log_norm, mu, omm, theta, g_acc, dot, g_mass, mass_p, parent_start,
                    num_fam, width, d, dv, pos, pos_s0, pos_s1, heading, pos_dim, g_pos,
                    g_pos_s0, g_pos_s1, bias, bias_s0, bias_s1, pair, g_bias, g_bias_s0,
                    g_bias_s1, causal: tl.constexpr, HAS_POS: tl.constexpr,
                    POS_HEADS: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BIAS_HEADS: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr,
                    BV: tl.constexpr, BP: tl.constexpr, IEEE: tl.constexpr):
    f = tl.program_id(0)
    h = tl.program_id(1)
    rows = tl.arange(0, BB)
    cols = tl.arange(0, BB)
    row_ok = rows < width
    fam = f * width
    child_rows = tl.load(child + fam + rows, mask=row_ok, other=0)
    s, q, k, any_ok = _scores(nodes, stride_h, stride_r, child_rows, rows, cols, h, width,
                              0, d, d, pos, pos_s0, pos_s1, heading + fam, pos_dim, bias,
                              bias_s0, bias_s1, pair + fam * width,
                              log_count + fam, causal, HAS_POS, POS_HEADS, HAS_BIAS,
                              BIAS_HEADS, BD, BP, IEEE)
    piece = h * num_fam * width + fam + rows
    lse = tl.load(log_norm + piece, mask=row_ok, other=0.0)
    a = tl.exp(s - lse[:, None])
    a = tl.where(row_ok[:, None], a, 0.0)
    vdims = tl.arange(0, BV)
    dims = tl.arange(0, BD)
    base = nodes + h * stride_h + child_rows[:, None] * stride_r
    vmask = row_ok[:, None] & (vdims[None, :] < dv)
    v = tl.load(base + 2 * d + vdims[None, :], mask=vmask, other=0.0)
    nu = tl.load(nodes + h * stride_h + child_rows * stride_r + 2 * d + dv,
                 mask=row_ok, other=0.0)
    m = tl.load(mass_p + h * num_fam + f)
    mu_r = tl.load(mu + piece, mask=row_ok, other=1.0)
    omm_r = tl.load(omm + piece, mask=row_ok, other=0.0)
    ga = tl.load(g_acc + piece[:, None] * dv + vdims[None, :], mask=vmask, other=0.0)
    th = tl.load(theta + piece[:, None] * dv + vdims[None, :], mask=vmask, other=0.0)
    dt = tl.load(dot + piece, mask=row_ok, other=0.0)
    gm = tl.load(g_mass + piece, mask=row_ok, other=0.0)
    g_theta = (m * omm_r)[:, None] * ga
    if IEEE:
        g_a = tl.dot(g_theta, tl.trans(v), input_precision='ieee')
        g_v = tl.dot(tl.trans(a), g_theta, input_precision='ieee')
    else:
        g_a = tl.dot(g_theta, tl.trans(v))
        g_v = tl.dot(tl.trans(a), g_theta)
    theta_dot = tl.sum(g_theta * th, axis=1)
    g_x = m * mu_r * omm_r * (gm - dt)
    neg_eta = tl.where(any_ok, lse, float('-inf'))
    # the parent's gradient, shared by its children as n(C)/n(P)
    prow = g_nodes + h * stride_h + (parent_start + f) * stride_r
    w = tl.load(weight + fam + rows, mask=row_ok, other=0.0)
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
    if IEEE:
        g_q = tl.dot(g_s, k, input_precision='ieee') + w[:, None] * gp_q[None, :]
        g_k = tl.dot(tl.trans(g_s), q, input_precision='ieee') + w[:, None] * gp_k[None, :]
    else:
        g_q = tl.dot(g_s, k) + w[:, None] * gp_q[None, :]
        g_k = tl.dot(tl.trans(g_s), q) + w[:, None] * gp_k[None, :]
    g_v = g_v + w[:, None] * gp_v[None, :]
    out = g_nodes + h * stride_h + child_rows[:, None] * stride_r
    qmask = row_ok[:, None] & (dims[None, :] < d)
    tl.store(out + dims[None, :], g_q, mask=qmask)
    tl.store(out + d + dims[None, :], g_k, mask=qmask)
    tl.store(out + 2 * d + vdims[None, :], g_v, mask=vmask)
    tl.store(g_nodes + h * stride_h + child_rows * stride_r + 2 * d + dv, g_nu, mask=row_ok)
    if HAS_POS:
        pdims = tl.arange(0, BP)
        nodes_of = tl.load(heading + fam + rows, mask=row_ok, other=0)
        pbase = pos + nodes_of[:, None] * pos_s0
        if POS_HEADS:
            pbase = pbase + h * pos_s1
        pmask = row_ok[:, None] & (pdims[None, :] < pos_dim)
        p = tl.load(pbase + pdims[None, :], mask=pmask, other=0.0)
        sym = g_s + tl.trans(g_s)
        if IEEE:
            g_p = tl.dot(sym, p, input_precision='ieee')
        else:
            g_p = tl.dot(sym, p)
        gbase = g_pos + nodes_of[:, None] * g_pos_s0
        if POS_HEADS:
            gbase = gbase + h * g_pos_s1
        tl.atomic_add(gbase + pdims[None, :], g_p, mask=pmask)
    if HAS_BIAS:
        ids = tl.load(pair + fam * width + rows[:, None] * width + cols[None, :],
                      mask=row_ok[:, None] & (cols[None, :] < width), other=0)
        bmask = row_ok[:, None] & (cols[None, :] < width)
        if BIAS_HEADS:
            tl.atomic_add(g_bias + ids * g_bias_s0 + h * g_bias_s1, g_s, mask=bmask)
        else:
            tl.atomic_add(g_bias + ids * g_bias_s0, g_s, mask=bmask)
