r"""Dense :math:`O(N^2)` reference for Hierarchical Self-Attention.

This module builds the attention matrix :math:`\hat\theta` of HSA explicitly,
in float64, straight from the closed form of ``docs/math.md`` section 3,
with plain Python loops over nodes.  It shares no code with the dynamic program
in :mod:`hsa_geo.functional` and exists to test it, and for users who want to
look at the attention matrix of a small input.

For leaves :math:`i \neq j` whose lowest common ancestor is :math:`N_m` on the
path :math:`N_0 = \text{root}, N_1, \ldots, N_L = i`, with :math:`A' = N_{m+1}`
and :math:`B'` the child of :math:`N_m` that holds :math:`j`:

.. math::
    \hat\theta_{ij} = \mu(N_1) \cdots \mu(N_m) \, (1 - \mu(A'))
    \, e^{s(A', B') + \eta(A')}
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo.hierarchy import Hierarchy

__all__ = ['hsa_dense', 'attention_matrix', 'flat_scores', 'block_pairs',
           'flat_softmax', 'nan_reach']


class _Tree:
    def __init__(self, h: Hierarchy):
        parent = h.parent.cpu().tolist()
        self.parent = parent
        self.num_leaves = h.num_leaves
        self.children: List[List[int]] = [[] for _ in parent]
        for node, p in enumerate(parent):
            if p >= 0:
                self.children[p].append(node)
        self.leaves: List[List[int]] = [[] for _ in parent]
        for leaf in range(h.num_leaves):
            node = leaf
            while node >= 0:
                self.leaves[node].append(leaf)
                node = parent[node]
        self.n = [len(x) for x in self.leaves]

    def path(self, leaf: int) -> List[int]:
        r"""Root first, the leaf last."""
        out = [leaf]
        while self.parent[out[-1]] >= 0:
            out.append(self.parent[out[-1]])
        return out[::-1]

    def siblings(self, node: int, causal: bool) -> List[int]:
        p = self.parent[node]
        if p < 0:
            return []
        return [b for b in self.children[p]
                if b != node and (not causal or b < node)]


def _node_stats(x: Tensor, tree: _Tree) -> List[Tensor]:
    return [x[tree.leaves[a]].mean(0) for a in range(len(tree.parent))]


def _pos_dot(pos: Optional[Tensor], a: int, b: int, head: int) -> float:
    if pos is None:
        return 0.0
    pa = pos[a] if pos.dim() == 2 else pos[a, head]
    pb = pos[b] if pos.dim() == 2 else pos[b, head]
    return float(pa @ pb)


def _bias_lookup(h: Hierarchy, bias: Optional[Tensor]) -> Dict[Tuple[int, int], Tensor]:
    if bias is None:
        return {}
    pairs = h.sibling_index.cpu().t().tolist()
    return {(a, b): bias[p] for p, (a, b) in enumerate(pairs)}


def attention_matrix(q: Tensor, k: Tensor, hierarchy: Hierarchy,
                     pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                     include_self: bool = False, causal: bool = False,
                     scale: Optional[float] = None) -> Tensor:
    r"""The HSA attention matrix :math:`\hat\theta`, shape
    ``[heads, num_leaves, num_leaves]``, in float64 (arguments as in
    :func:`hsa_geo.hsa`)."""
    q, k = q.detach().double().cpu(), k.detach().double().cpu()
    pos = None if pos is None else pos.detach().double().cpu()
    bias = None if bias is None else bias.detach().double().cpu()
    num_leaves, heads, dim = q.shape
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    tree = _Tree(hierarchy)
    num_nodes = len(tree.parent)
    biases = _bias_lookup(hierarchy, bias)
    rho_q, rho_k = _node_stats(q, tree), _node_stats(k, tree)
    theta = torch.zeros(heads, num_leaves, num_leaves, dtype=torch.float64)
    inf = math.inf

    for head in range(heads):
        def score(a: int, b: int, head: int = head) -> float:
            out = float(rho_q[a][head] @ rho_k[b][head]) * scale
            out += _pos_dot(pos, a, b, head)
            if (a, b) in biases:
                bb = biases[(a, b)]
                out += float(bb if bb.dim() == 0 else bb[head])
            return out

        eta = [inf] * num_nodes
        for a in range(num_nodes):
            sibs = tree.siblings(a, causal)
            if sibs:
                eta[a] = -_lse([math.log(tree.n[b]) + score(a, b) for b in sibs])

        phi = [inf] * num_nodes
        # children before parents: process by decreasing depth
        depth = [0] * num_nodes
        for a in range(num_nodes):
            d, x = 0, a
            while tree.parent[x] >= 0:
                x, d = tree.parent[x], d + 1
            depth[a] = d
        order = sorted(range(num_nodes), key=lambda a: -depth[a])
        for a in order:
            if a < num_leaves:
                phi[a] = -score(a, a) if include_self else inf
                continue
            total = 0.0
            for c in tree.children[a]:
                term = _logaddexp(-phi[c], -eta[c])
                total += tree.n[c] / tree.n[a] * term
            phi[a] = -total

        def mu(a: int, eta: dict = eta, phi: dict = phi) -> float:
            if eta[a] == inf:  # no sibling: keeps everything
                return 1.0
            if phi[a] == inf:
                return 0.0
            return _sigmoid(eta[a] - phi[a])

        paths = [tree.path(i) for i in range(num_leaves)]
        for i in range(num_leaves):
            pi = paths[i]
            if include_self:
                prod = 1.0
                for node in pi[1:]:
                    prod *= mu(node)
                theta[head, i, i] = prod
            for j in range(num_leaves):
                if j == i:
                    continue
                pj = paths[j]
                if pi[0] != pj[0]:
                    continue  # different trees never interact
                m = 0
                while m + 1 < min(len(pi), len(pj)) and pi[m + 1] == pj[m + 1]:
                    m += 1
                a_, b_ = pi[m + 1], pj[m + 1]
                if causal and not b_ < a_:
                    continue
                prod = 1.0
                for node in pi[1:m + 1]:
                    prod *= mu(node)
                delta = (1.0 - mu(a_)) * math.exp(score(a_, b_) + eta[a_])
                theta[head, i, j] = prod * delta
    return theta


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _lse(xs: List[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf and b == -math.inf:
        return -math.inf
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def hsa_dense(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
              pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
              include_self: bool = False, causal: bool = False,
              scale: Optional[float] = None) -> Tensor:
    r"""Dense HSA: :math:`\mathrm{out}_i = \sum_j \hat\theta_{ij} v_j`, in
    float64, with the arguments of :func:`hsa_geo.hsa`.  Cost
    :math:`O(N^2 \cdot \text{depth})`: for tests and small inputs only."""
    theta = attention_matrix(q, k, hierarchy, pos, bias, include_self, causal,
                             scale)
    v = v.detach().double().cpu()
    return torch.einsum('hij,jhd->ihd', theta, v)


def block_pairs(hierarchy: Hierarchy) -> Tensor:
    r"""``[2, num_leaves, num_leaves]`` the block :math:`(A', B')` of every
    leaf pair :math:`(i, j)` as user node indices: the children of the lowest
    common ancestor that hold :math:`i` and :math:`j` (``-1`` for pairs in
    different trees; :math:`(i, i)` on the diagonal)."""
    tree = _Tree(hierarchy)
    num_leaves = hierarchy.num_leaves
    out = torch.full((2, num_leaves, num_leaves), -1, dtype=torch.long)
    paths = [tree.path(i) for i in range(num_leaves)]
    for i in range(num_leaves):
        out[:, i, i] = i
        for j in range(num_leaves):
            pi, pj = paths[i], paths[j]
            if i == j or pi[0] != pj[0]:
                continue
            m = 0
            while m + 1 < min(len(pi), len(pj)) and pi[m + 1] == pj[m + 1]:
                m += 1
            out[0, i, j], out[1, i, j] = pi[m + 1], pj[m + 1]
    return out


def flat_scores(q: Tensor, k: Tensor, hierarchy: Hierarchy,
                pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                scale: Optional[float] = None) -> Tensor:
    r"""``[heads, num_leaves, num_leaves]`` token-level scores
    :math:`s(i, j) = \epsilon(A') \cdot \epsilon(B') + q_i \cdot k_j /
    \sqrt{d} + b(A', B')` with the highest distinct ancestors' position vectors
    and bias, in float64 (the diagonal uses the leaf's own position vector)."""
    q, k = q.detach().double().cpu(), k.detach().double().cpu()
    num_leaves, heads, dim = q.shape
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    scores = torch.einsum('ihd,jhd->hij', q, k) * scale
    blocks = block_pairs(hierarchy)
    biases = _bias_lookup(hierarchy, None if bias is None else bias.detach().double().cpu())
    pos = None if pos is None else pos.detach().double().cpu()
    for i in range(num_leaves):
        for j in range(num_leaves):
            a, b = int(blocks[0, i, j]), int(blocks[1, i, j])
            if a < 0:
                continue
            for head in range(heads):
                scores[head, i, j] += _pos_dot(pos, a, b, head)
                if (a, b) in biases:
                    bb = biases[(a, b)]
                    scores[head, i, j] += float(bb if bb.dim() == 0 else bb[head])
    return scores


def flat_softmax(scores: Tensor, hierarchy: Hierarchy, include_self: bool = False,
                 causal: bool = False) -> Tensor:
    r"""Softmax attention over all leaves of the same tree (the flat
    attention HSA is the KL projection of), excluding the diagonal unless
    :obj:`include_self`; with :obj:`causal`, a leaf sees only the leaves in
    blocks :math:`B' < A'`.  Rows with nothing to attend to are zero."""
    blocks = block_pairs(hierarchy)
    allowed = blocks[0] >= 0
    eye = torch.eye(hierarchy.num_leaves, dtype=torch.bool)
    allowed &= ~eye
    if causal:
        allowed &= blocks[1] < blocks[0]
    if include_self:
        allowed |= eye
    logits = scores.masked_fill(~allowed, -math.inf)
    out = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(out, nan=0.0)


def nan_reach(q: Tensor, k: Tensor, v: Tensor, hierarchy: Hierarchy,
              pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
              include_self: bool = False, causal: bool = False,
              scale: Optional[float] = None) -> Tensor:
    r"""``[num_leaves, heads, d_v]`` bool: the outputs of HSA that are NaN
    for these inputs, some of which hold NaN (arguments as in
    :func:`hsa_dense`).  Output ``(i, c)`` is NaN exactly when a weight
    :math:`\hat\theta_{ij}` that is not structurally zero (not zero for
    finite inputs: :math:`j` another leaf of :math:`i`'s tree that it may
    attend, or :math:`i` itself with ``include_self``) is NaN, or such a
    :math:`v_j` is NaN in channel :math:`c`.  A weight of exactly zero (the
    diagonal, a sibling masked by ``causal``, a subtree that keeps nothing)
    never carries a NaN."""
    options = dict(pos=pos, bias=bias, include_self=include_self, causal=causal,
                   scale=scale)
    finite = lambda t: None if t is None else torch.nan_to_num(t.detach(), nan=0.5)  # noqa
    attended = attention_matrix(finite(q), finite(k), hierarchy, **dict(
        options, pos=finite(pos), bias=finite(bias))) != 0                # [H, L, L]
    bad_weight = (torch.isnan(attention_matrix(q, k, hierarchy, **options))
                  & attended).any(-1)                                       # [H, L]
    bad_value = torch.isnan(v.detach().cpu()).permute(1, 0, 2).to(torch.float64)
    through_v = (attended.to(torch.float64) @ bad_value) > 0               # [H, L, dv]
    return (bad_weight.unsqueeze(-1) | through_v).permute(1, 0, 2)
