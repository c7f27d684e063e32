r"""Exact Hierarchical Self-Attention across processes.

The forest's top-level subtrees (the children of the global root) are split
across the ranks of a :mod:`torch.distributed` process group; each rank holds
its subtrees as a forest of its own (their roots are the top-level nodes, in
the global order rank by rank) and only their leaves' queries, keys and
values.  HSA couples two top-level subtrees :math:`A \neq B` only through the
root's family (docs/math.md, sections 2-4 and 6): :math:`\eta(A)` and
:math:`\theta(A)` need every sibling's key and value means, leaf count and
position, and the top-down pass then enters :math:`A` with

.. math::
    \mathrm{out}_i = (1 - \mu(A))\, \theta(A) + \mu(A)\, \mathrm{out}^{A}_i,
    \qquad \mu(A) = \sigma(\eta(A) - \phi(A)),

where :math:`\mathrm{out}^{A}_i` is HSA inside :math:`A`'s subtree alone and
:math:`\phi(A)` its subtree energy.  So each rank

1. runs the dynamic program on its own subtrees, each given one ghost sibling
   with a zero key and a marker value: the extra value channels return
   :math:`\mu_g = \sigma(-\phi(A))` and :math:`1 - \mu_g`, hence
   :math:`\phi(A)`, and the remaining channels :math:`\mu_g\,
   \mathrm{out}^{A}_i` (every quantity differentiable through the engine's own
   backward pass);
2. all-gathers the top-level nodes' statistics, :math:`O(\text{top nodes}
   \times \text{heads} \times d)` numbers, never :math:`O(N)`;
3. computes the root family's :math:`\eta`, :math:`\theta` for its own
   top-level nodes and combines.

The result equals single-process :func:`hsa_geo.hsa` over the whole tree to
round-off, forward and backward (the gather is autograd-aware, so gradients
of remote statistics flow back to the rank that owns them), with positions,
``include_self`` and ``causal``; a per-pair ``bias`` and attention dropout
are not supported (their pairs and masks would have to be split by rank).
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import Tensor

from hsa_geo.attention_inputs import check_options
from hsa_geo.distributed.agreement import agree, column, fingerprint, gather_fingerprints
from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy

__all__ = ['distributed_hsa']


def distributed_hsa(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
                    pos: Optional[Tensor] = None, top_pos: Optional[Tensor] = None,
                    include_self: bool = False, causal: bool = False,
                    scale: Optional[float] = None, group=None) -> Tensor:
    r"""HSA over a tree whose top-level subtrees are spread over the ranks of
    :obj:`group`: every rank passes its own subtrees and gets its own leaves'
    outputs, equal to those of :func:`hsa_geo.hsa` over the whole tree.

    Args:
        q (Tensor): Queries of this rank's leaves ``[num_leaves, heads, d]``.
        k (Tensor): Keys ``[num_leaves, heads, d]``.
        v (Tensor): Values ``[num_leaves, heads, d_v]``.
        hierarchy (Hierarchy): This rank's subtrees as a forest: its roots are
            its top-level nodes (children of the global root), which come in
            the global order rank after rank, in node order within a rank.
        pos (Tensor, optional): Position vectors of this rank's nodes inside
            its subtrees, ``[num_nodes, c]`` or ``[num_nodes, heads, c]`` (a
            root's row is unused). (default: :obj:`None`)
        top_pos (Tensor, optional): Position vectors of this rank's top-level
            nodes in the global root's family, ``[num_roots, c]`` or
            ``[num_roots, heads, c]``, in root (node) order.
            (default: :obj:`None`)
        include_self (bool, optional): As in :func:`hsa_geo.hsa`.
            (default: :obj:`False`)
        causal (bool, optional): As in :func:`hsa_geo.hsa`; in the global
            root's family a top-level node attends to those before it in the
            global order above. (default: :obj:`False`)
        scale (float, optional): Score scale, :math:`1/\sqrt{d}` if
            :obj:`None`.
        group (ProcessGroup, optional): The process group; :obj:`None`: the
            default group if :mod:`torch.distributed` is initialised, else this
            process alone (then the ranks' subtrees are all here).

    Before anything else the ranks all-gather a small fingerprint of their
    call (whether its input was refused, the
    :class:`~hsa_geo.distributed.share.Share` that a share from
    :func:`~hsa_geo.distributed.shard_forest` or
    :func:`~hsa_geo.distributed.shard_hierarchy` records: its index, the
    world size it was made for, a digest of the whole hierarchy; the options,
    ``scale``, shapes, dtypes and whether positions are given), and every rank
    raises the same :class:`ValueError` when they would not compute one
    attention together (a rank passing another's share, shares made for
    another world size or from another hierarchy, options on one rank only,
    ...), or when one rank's input is refused, instead of a wrong result, a
    hang or an abort.  A hierarchy built by hand records no share: then only
    the rest is compared.
    """
    return _distributed_hsa(q, k, v, hierarchy, pos, top_pos, include_self, causal, scale,
                            group)


def _check_inputs(q, k, v, hierarchy, pos, top_pos, include_self, causal, scale):
    r"""This rank's inputs checked: ``(include_self, causal, scale)``."""
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy (this rank's subtrees), "
                        f"got {type(hierarchy).__name__}")
    for name, t in (('q', q), ('k', k), ('v', v)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"'{name}' must be a floating-point tensor")
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"'q', 'k' must be [num_leaves, heads, d] and 'v' [num_leaves, "
                         f"heads, d_v] with the same leaves and heads, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    num_roots, num_leaves = hierarchy.roots.numel(), hierarchy.num_leaves
    if q.size(0) != num_leaves:
        raise ValueError(f"'q' has {q.size(0)} rows but 'hierarchy' has {num_leaves} leaves")
    if (pos is None) != (top_pos is None):
        raise ValueError("pass 'pos' and 'top_pos' together (positions inside the subtrees "
                         "and in the root's family) or neither")
    if pos is not None:
        _check_positions(pos, 'pos', hierarchy.num_nodes, q.size(1), 'nodes in its subtrees')
        _check_positions(top_pos, 'top_pos', num_roots, q.size(1),
                         "roots (this rank's top-level nodes)")
    return check_options(q, include_self, causal, scale)


def _distributed_hsa(q, k, v, hierarchy, pos, top_pos, include_self, causal, scale, group,
                     error: Optional[Exception] = None) -> Tensor:
    r""":func:`distributed_hsa`; :obj:`error`: a fault already found in this
    rank's input (raised once the ranks have compared their inputs)."""
    if error is None:
        try:
            include_self, causal, scale = _check_inputs(q, k, v, hierarchy, pos, top_pos,
                                                        include_self, causal, scale)
        except (TypeError, ValueError) as found:
            error = found
    # before anything else, the ranks compare what they are about to run:
    # one small all-gather, after which every rank raises the same error or
    # none does (no rank is left waiting in a collective the others skip)
    mine = fingerprint(error, q, v, hierarchy, top_pos, include_self, causal, scale)
    table, rank, world = gather_fingerprints(mine, q, group)
    agree(table, rank, world, error)
    num_roots, num_leaves = hierarchy.roots.numel(), hierarchy.num_leaves
    heads, dim, dim_v = q.size(1), q.size(2), v.size(2)
    out_dtype = v.dtype     # half precision runs in float32, as in hsa()
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if pos is not None:
        pos, top_pos = pos.to(dtype), top_pos.to(dtype)
    tree = hierarchy.leaf_tree
    count = torch.bincount(tree, minlength=num_roots).to(dtype)
    def mean(x):
        return torch.zeros(num_roots, *x.shape[1:], dtype=x.dtype, device=x.device
                                     ).index_add_(0, tree, x) / count.view(-1, 1, 1)
    rho_q, rho_k, rho_v = mean(q), mean(k), mean(v)

    # 1. HSA inside every subtree, each with a ghost sibling before it (the
    # ghosts are the first leaves, so a causal subtree root sees its ghost
    # too) whose key is the subtree's mean key: the score between the two,
    # s_ref = rho_q . rho_k / sqrt(d), is on the scale of the subtree's own
    # scores, so the share the ghost takes stays away from 0 and 1 however
    # large the scores are; the marker value returns that share
    ghosted = _ghosted(hierarchy)
    ones_leaf, zeros_leaf = v.new_ones(num_leaves, heads, 1), v.new_zeros(num_leaves, heads, 1)
    ghost_value = torch.cat([v.new_zeros(num_roots, heads, dim_v + 1),
                             v.new_ones(num_roots, heads, 1)], -1)
    value = torch.cat([ghost_value, torch.cat([v, ones_leaf, zeros_leaf], -1)])
    inside = hsa(torch.cat([q.new_zeros(num_roots, heads, dim), q]), torch.cat([rho_k, k]),
                 value, ghosted, pos=_ghosted_pos(pos, hierarchy, num_roots),
                 include_self=include_self, causal=causal, scale=scale)[num_roots:]
    inner, kept, left = inside[..., :dim_v], inside[..., dim_v], inside[..., dim_v + 1]
    if causal and not include_self:
        # a leaf may keep nothing of what reaches it (a first child attends to
        # no one), so its row inside the subtree is not stochastic: the share
        # the subtree keeps is all that does not go to the ghost
        kept = (1.0 - left).clamp(min=0.0)
    s_ref = (rho_q * rho_k).sum(-1) * scale                          # [num_roots, heads]

    # 2. the top-level nodes' statistics, gathered from every rank
    eps = None if top_pos is None else (top_pos if top_pos.dim() == 3 else
                                        top_pos.unsqueeze(1).expand(-1, heads, -1))
    shared = [rho_k, rho_v, count.view(-1, 1, 1).expand(-1, heads, 1)]
    if eps is not None:
        shared.append(eps.to(q.dtype))
    gathered, offset = _all_gather(torch.cat(shared, -1), group,
                                   column(table, 'num_roots'), rank)
    all_k, all_v = gathered[..., :dim], gathered[..., dim:dim + dim_v]
    all_n = gathered[:, 0, dim + dim_v]
    all_eps = gathered[..., dim + dim_v + 1:] if eps is not None else None

    # 3. the root family: eta and theta of this rank's top-level nodes
    scores = torch.einsum('ahd,bhd->abh', rho_q, all_k) * scale
    if all_eps is not None:
        scores = scores + torch.einsum('ahc,bhc->abh', eps.to(q.dtype), all_eps)
    scores = scores + all_n.log().view(1, -1, 1)
    mine = offset + torch.arange(num_roots, device=q.device)
    others = torch.arange(all_n.numel(), device=q.device)
    # a node never attends to itself in its family; causal: nor to the right
    masked = (others.view(1, -1) >= mine.view(-1, 1)) if causal else \
        (others.view(1, -1) == mine.view(-1, 1))
    scores = scores.masked_fill(masked.unsqueeze(-1), -math.inf)
    has_sibling = ~masked.all(1)                        # [num_roots]
    safe = torch.where(has_sibling.view(-1, 1, 1), scores, 0.0)
    eta = torch.where(has_sibling.view(-1, 1), -torch.logsumexp(safe, 1), math.inf)
    theta = torch.einsum('abh,bhe->ahe', torch.softmax(safe, 1), all_v) * \
        has_sibling.view(-1, 1, 1)

    # 4. combine: out = (1 - mu) theta + mu out_inside, mu = sigmoid(eta - phi),
    # phi = log(left) - log(kept) - s_ref; kept = 0 means phi = +inf (nothing
    # inside); shares below the dtype's smallest normal count as zero (their
    # logarithm's derivative would overflow)
    tiny = torch.finfo(dtype).tiny
    has_kept, has_left = kept > tiny, left > tiny
    log_kept = torch.where(has_kept, kept, 1.0).log()
    log_left = torch.where(has_left, left, 1.0).log()
    eta_leaf = eta[tree]
    finite = has_kept & has_left & torch.isfinite(eta_leaf)
    x = torch.where(finite, log_left - log_kept - s_ref[tree] -
                    torch.where(finite, eta_leaf, 0.0), 0.0)
    log_mu = torch.where(finite, torch.nn.functional.logsigmoid(-x),
                         torch.where(has_kept, 0.0, -math.inf))   # mu: 1 or 0 at the ends
    gate = torch.where(has_kept, torch.exp(log_mu - log_kept), 0.0)
    outside = torch.where(finite, torch.sigmoid(x), torch.where(has_kept, 0.0, 1.0))
    out = outside.unsqueeze(-1) * theta[tree] + gate.unsqueeze(-1) * inner
    alone = ~has_sibling
    if bool(alone.any()):
        # a top-level node that attends to no sibling (the first one when
        # causal, the only one) keeps everything: mu = 1 even where its
        # subtree energy is infinite, and then the ghost run has lost what
        # stays inside (it all went to the ghost), so run the subtrees alone
        plain = hsa(q, k, v, hierarchy, pos=pos, include_self=include_self, causal=causal,
                    scale=scale)
        out = torch.where(alone[tree].view(-1, 1, 1), plain, out)
    return out.to(out_dtype)


def _all_gather(x: Tensor, group, sizes: List[int], rank: int) -> tuple:
    r"""Every rank's rows of :obj:`x` (:obj:`sizes` of them, from the
    fingerprints), concatenated in rank order, with this rank's offset;
    autograd-aware (gradients return to their owners)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return x, 0
    world = len(sizes)
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.size(0), *x.shape[1:])])
    group = group or dist.group.WORLD
    # the functional collective with autograd under the name this torch has
    # (the older names are deprecated in newer releases)
    import torch.distributed._functional_collectives as collectives
    gather = getattr(collectives, 'all_gather_single_autograd', None) or \
        getattr(collectives, 'all_gather_tensor_autograd', None)
    if gather is not None:
        stacked = gather(padded, 0, group)
        parts: List[Tensor] = list(stacked.view(world, *padded.shape).unbind(0))
    else:
        from torch.distributed.nn.functional import all_gather
        parts = list(all_gather(padded, group=group))
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]), sum(sizes[:rank])


def _check_positions(pos, name: str, rows: int, heads: int, what: str) -> None:
    if not isinstance(pos, Tensor) or not pos.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor")
    if pos.size(0) != rows or not (pos.dim() == 2 or (pos.dim() == 3 and pos.size(1) == heads)):
        raise ValueError(f"'{name}' must be [{rows}, c] or [{rows}, heads={heads}, c] (one "
                         f"row per {what}), got {list(pos.shape)}")


def _ghosted(hierarchy: Hierarchy) -> Hierarchy:
    r"""The forest with every root given a new parent and a ghost leaf
    sibling: the ghosts first (before every real node, so that causal
    attention sees them), then the leaves, the internal nodes and the new
    parents (kept on the hierarchy, which is immutable)."""
    cached = getattr(hierarchy, '_ghosted_forest', None)
    if cached is not None:
        return cached
    parent = hierarchy.parent.cpu()
    num_nodes = parent.numel()
    roots = hierarchy.roots.cpu()
    num_roots = roots.numel()
    new_parent = torch.empty(num_nodes + 2 * num_roots, dtype=torch.long)
    top = num_nodes + num_roots + torch.arange(num_roots)       # the new parents
    new_parent[num_roots:num_roots + num_nodes] = torch.where(parent >= 0,
                                                              parent + num_roots, -1)
    new_parent[roots + num_roots] = top
    new_parent[:num_roots] = top                                # the ghosts
    new_parent[top] = -1
    out = Hierarchy.from_parent(new_parent.to(hierarchy.parent.device),
                                hierarchy.num_leaves + num_roots)
    hierarchy._ghosted_forest = out
    return out


def _ghosted_pos(pos: Optional[Tensor], hierarchy: Hierarchy, num_roots: int):
    if pos is None:
        return None
    pad = pos.new_zeros(num_roots, *pos.shape[1:])
    # a root's own row meets only its ghost (position zero): any value is exact
    return torch.cat([pad, pos, pad])
