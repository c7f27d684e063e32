r"""Exact Hierarchical Self-Attention across processes.

The forest's top-level subtrees (the children of the global root) are split
across the ranks of a :mod:`torch.distributed` process group; each rank holds
its subtrees as a forest of its own (their roots are the top-level nodes, in
the global order rank by rank) and only their leaves' queries, keys and
values.  HSA couples two top-level subtrees :math:`A \neq B` only through the
root's family (docs/math.md, sections 2-4): :math:`\eta(A)` and
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
of remote statistics flow back to the rank that owns them).  Supported: the
default attention (no ``include_self``, ``causal``, ``bias`` or dropout).
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import Tensor

from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy

__all__ = ['distributed_hsa', 'shard_forest', 'communicated_bytes']


def distributed_hsa(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
                    pos: Optional[Tensor] = None, top_pos: Optional[Tensor] = None,
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
        scale (float, optional): Score scale, :math:`1/\sqrt{d}` if
            :obj:`None`.
        group (ProcessGroup, optional): The process group; :obj:`None`: the
            default group if :mod:`torch.distributed` is initialised, else this
            process alone (then the ranks' subtrees are all here).
    """
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy (this rank's subtrees), "
                        f"got {type(hierarchy).__name__}")
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"'q', 'k' must be [num_leaves, heads, d] and 'v' [num_leaves, "
                         f"heads, d_v] with the same leaves and heads, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    num_roots = hierarchy.roots.numel()
    if top_pos is not None and top_pos.size(0) != num_roots:
        raise ValueError(f"'top_pos' has {top_pos.size(0)} rows but 'hierarchy' has "
                         f"{num_roots} roots (this rank's top-level nodes)")
    heads, dim, dim_v = q.size(1), q.size(2), v.size(2)
    scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
    num_leaves = hierarchy.num_leaves

    # 1. HSA inside every subtree, each with a ghost sibling (zero key, marker value)
    ghosted = _ghosted(hierarchy)
    zeros = q.new_zeros(num_roots, heads, dim)
    ones_leaf, zeros_leaf = v.new_ones(num_leaves, heads, 1), v.new_zeros(num_leaves, heads, 1)
    ghost_value = torch.cat([v.new_zeros(num_roots, heads, dim_v + 1),
                             v.new_ones(num_roots, heads, 1)], -1)
    value = torch.cat([torch.cat([v, ones_leaf, zeros_leaf], -1), ghost_value])
    inside = hsa(torch.cat([q, zeros]), torch.cat([k, zeros]), value, ghosted,
                 pos=_ghosted_pos(pos, hierarchy, num_roots), scale=scale)[:num_leaves]
    inner, kept, left = inside[..., :dim_v], inside[..., dim_v], inside[..., dim_v + 1]

    # 2. the top-level nodes' statistics, gathered from every rank
    tree = hierarchy.leaf_tree
    count = torch.bincount(tree, minlength=num_roots).to(q.dtype)
    mean = lambda x: torch.zeros(num_roots, *x.shape[1:], dtype=x.dtype, device=x.device
                                 ).index_add_(0, tree, x) / count.view(-1, 1, 1)
    rho_q, rho_k, rho_v = mean(q), mean(k), mean(v)
    eps = None if top_pos is None else (top_pos if top_pos.dim() == 3 else
                                        top_pos.unsqueeze(1).expand(-1, heads, -1))
    shared = [rho_k, rho_v, count.view(-1, 1, 1).expand(-1, heads, 1)]
    if eps is not None:
        shared.append(eps.to(q.dtype))
    gathered, offset = _all_gather(torch.cat(shared, -1), group)
    all_k, all_v = gathered[..., :dim], gathered[..., dim:dim + dim_v]
    all_n = gathered[:, 0, dim + dim_v]
    all_eps = gathered[..., dim + dim_v + 1:] if eps is not None else None

    # 3. the root family: eta and theta of this rank's top-level nodes
    scores = torch.einsum('ahd,bhd->abh', rho_q, all_k) * scale
    if all_eps is not None:
        scores = scores + torch.einsum('ahc,bhc->abh', eps.to(q.dtype), all_eps)
    scores = scores + all_n.log().view(1, -1, 1)
    self_pair = torch.zeros(num_roots, all_n.numel(), 1, dtype=torch.bool, device=q.device)
    self_pair[torch.arange(num_roots), offset + torch.arange(num_roots)] = True
    scores = scores.masked_fill(self_pair, -math.inf)
    alone = all_n.numel() == 1                 # no siblings: everything stays inside
    if alone:
        eta = torch.full((num_roots, heads), math.inf, dtype=q.dtype, device=q.device)
        theta = torch.zeros(num_roots, heads, dim_v, dtype=q.dtype, device=q.device)
    else:
        eta = -torch.logsumexp(scores, 1)
        theta = torch.einsum('abh,bhe->ahe', torch.softmax(scores, 1), all_v)

    # 4. combine: out = (1 - mu) theta + mu out_inside, mu = sigmoid(eta - phi),
    # phi = log(left) - log(kept); kept = 0 means phi = +inf (a single leaf)
    has_kept, has_left = kept > 0, left > 0
    log_kept = torch.where(has_kept, kept, 1.0).log()
    log_left = torch.where(has_left, left, 1.0).log()
    eta_leaf = eta[tree]
    finite = has_kept & has_left & torch.isfinite(eta_leaf)
    x = torch.where(finite, log_left - log_kept - torch.where(finite, eta_leaf, 0.0), 0.0)
    log_mu = torch.where(finite, torch.nn.functional.logsigmoid(-x),
                         torch.where(has_kept, 0.0, -math.inf))   # mu: 1 or 0 at the ends
    gate = torch.where(has_kept, torch.exp(log_mu - log_kept), 0.0)
    outside = torch.where(finite, torch.sigmoid(x),
                          torch.where(has_kept, 0.0, 1.0)) if not alone else \
        torch.zeros_like(kept)
    out = outside.unsqueeze(-1) * theta[tree] + gate.unsqueeze(-1) * inner
    return out.to(v.dtype)


def shard_forest(hierarchy: Hierarchy, num_shards: int) -> List[tuple]:
    r"""Splits a forest of top-level subtrees (its roots are the children of
    the global root) into :obj:`num_shards` contiguous runs of roots with
    about equal leaf counts, for :func:`distributed_hsa`.

    Returns one ``(local, leaf_ids, node_ids)`` per shard: the shard's forest
    (leaves first, every order kept), and the indices of its leaves and of
    all its nodes in :obj:`hierarchy` (``pos[node_ids]`` are its positions,
    ``q[leaf_ids]`` its queries)."""
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"'num_shards' must be a positive int, got {num_shards!r}")
    if num_shards > hierarchy.roots.numel():
        raise ValueError(f"'num_shards' ({num_shards}) exceeds the number of top-level "
                         f"subtrees ({hierarchy.roots.numel()})")
    parent = hierarchy.parent.cpu()
    num_leaves, num_nodes = hierarchy.num_leaves, parent.numel()
    tree_of_leaf = hierarchy.leaf_tree.cpu()
    sizes = torch.bincount(tree_of_leaf, minlength=hierarchy.roots.numel())
    # tree of every node: walk up to the root
    node_root = torch.arange(num_nodes)
    for _ in range(hierarchy.depth + 1):
        up = parent[node_root]
        node_root = torch.where(up >= 0, up, node_root)
    root_rank = torch.full((num_nodes, ), -1, dtype=torch.long)
    root_rank[hierarchy.roots.cpu()] = torch.arange(hierarchy.roots.numel())
    node_tree = root_rank[node_root]
    # contiguous runs of trees with about equal leaves, at least one tree each
    starts = torch.cumsum(sizes, 0) - sizes
    num_trees, bounds = sizes.numel(), [0]
    for i in range(1, num_shards):
        cut = int(torch.searchsorted(starts, torch.tensor(i * num_leaves / num_shards)))
        bounds.append(min(max(cut, bounds[-1] + 1), num_trees - (num_shards - i)))
    bounds.append(num_trees)
    shards = []
    for first, last in zip(bounds[:-1], bounds[1:]):
        mine = (node_tree >= first) & (node_tree < last)
        leaf_ids = mine[:num_leaves].nonzero().view(-1)
        node_ids = torch.cat([leaf_ids, num_leaves + mine[num_leaves:].nonzero().view(-1)])
        local = torch.full((num_nodes, ), -1, dtype=torch.long)
        local[node_ids] = torch.arange(node_ids.numel())
        local_parent = torch.where(parent[node_ids] >= 0, local[parent[node_ids].clamp(min=0)],
                                   -1)
        shards.append((Hierarchy.from_parent(local_parent.to(hierarchy.parent.device),
                                             leaf_ids.numel()), leaf_ids, node_ids))
    return shards


def communicated_bytes(num_top_nodes: int, heads: int, dim: int, dim_v: int,
                       pos_dim: int = 0, element_size: int = 4) -> int:
    r"""Bytes each rank receives in one forward pass of :func:`distributed_hsa`:
    every top-level node's key and value means, leaf count and position, per
    head (the backward pass sends the same amount back)."""
    return num_top_nodes * heads * (dim + dim_v + 1 + pos_dim) * element_size


def _all_gather(x: Tensor, group) -> tuple:
    r"""Every rank's rows of :obj:`x`, concatenated in rank order, with this
    rank's offset; autograd-aware (gradients return to their owners)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return x, 0
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    size = torch.tensor([x.size(0)], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    sizes = [int(s) for s in sizes]
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.size(0), *x.shape[1:])])
    from torch.distributed.nn.functional import all_gather
    parts: List[Tensor] = list(all_gather(padded, group=group or dist.group.WORLD))
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]), sum(sizes[:rank])


def _ghosted(hierarchy: Hierarchy) -> Hierarchy:
    r"""The forest with every root given a new parent and a ghost leaf
    sibling: leaves, then the ghosts, then the internal nodes, then the new
    parents (kept on the hierarchy, which is immutable)."""
    cached = getattr(hierarchy, '_ghosted_forest', None)
    if cached is not None:
        return cached
    parent = hierarchy.parent.cpu()
    num_leaves, num_nodes = hierarchy.num_leaves, parent.numel()
    roots = hierarchy.roots.cpu()
    num_roots = roots.numel()
    shift = lambda index: torch.where(index >= num_leaves, index + num_roots, index)
    new_parent = torch.empty(num_nodes + 2 * num_roots, dtype=torch.long)
    old = torch.arange(num_nodes)
    new_parent[shift(old)] = torch.where(parent >= 0, shift(parent.clamp(min=0)), -1)
    top = num_nodes + num_roots + torch.arange(num_roots)       # the new parents
    new_parent[shift(roots)] = top
    new_parent[num_leaves + torch.arange(num_roots)] = top       # the ghosts
    new_parent[top] = -1
    out = Hierarchy.from_parent(new_parent.to(hierarchy.parent.device),
                                num_leaves + num_roots)
    hierarchy._ghosted_forest = out
    return out


def _ghosted_pos(pos: Optional[Tensor], hierarchy: Hierarchy, num_roots: int):
    if pos is None:
        return None
    num_leaves = hierarchy.num_leaves
    pad = pos.new_zeros(num_roots, *pos.shape[1:])
    # a root's own row meets only its ghost (position zero): any value is exact
    return torch.cat([pos[:num_leaves], pad, pos[num_leaves:], pad])
