r"""The HSA attention weights in block form, their dense expansion and a plot.

HSA attention is constant on blocks (section 3 of ``docs/math.md``): it
is fully described by

* ``mu[A]``: the share of attention that the leaves of node :math:`A` keep
  inside :math:`A`'s subtree (1 for nodes without siblings; for a leaf, the
  share it keeps on itself, 0 unless ``include_self``), and
* ``delta[p]``: the weight that each leaf of :math:`A` gives to each leaf of
  its sibling :math:`B`, for the sibling pair ``(A, B) = sibling_index[:, p]``,

and :math:`\hat\theta_{ij} = \mu(N_1) \cdots \mu(N_m)\, \delta(A', B')`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from hsa_geo.attention_inputs import check_inputs, check_options, check_sizes
from hsa_geo.engine import Config, Recorder, forward_pass, needs_guard
from hsa_geo.engine.depth import node_depth
from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy

__all__ = ['AttentionWeights', 'hsa_weights', 'padded_attention_weights']


class AttentionWeights(NamedTuple):
    r"""HSA attention weights in block form (see the module docstring).

    Attributes:
        sibling_index (LongTensor): ``[2, num_pairs]`` ordered sibling pairs.
        delta (Tensor): ``[num_pairs, heads]`` per-leaf weight of each pair.
        mu (Tensor): ``[num_nodes, heads]`` share kept inside each subtree.
        hierarchy (Hierarchy): The hierarchy.
        include_self (bool): Whether leaves attend to themselves.
    """
    sibling_index: Tensor
    delta: Tensor
    mu: Tensor
    hierarchy: Hierarchy
    include_self: bool

    def edge_form(self) -> Tuple[Tensor, Tensor]:
        r"""PyG's ``(edge_index, alpha)`` form: the sibling pairs and
        ``alpha`` ``[num_pairs, heads]``, :math:`\alpha(A, B) = n(B)\,
        \delta(A, B)`, the share of :math:`A`'s attention that goes to the
        leaves of :math:`B`; with the kept share :math:`\mu(A)`, every row
        sums to one: :math:`\sum_B \alpha(A, B) + \mu(A) = 1`."""
        counts = _leaf_counts(self.hierarchy).to(self.delta.dtype)
        return self.sibling_index, self.delta * counts[self.sibling_index[1]].unsqueeze(-1)

    def dense(self) -> Tensor:
        r"""The full attention matrix :math:`\hat\theta`, ``[heads,
        num_leaves, num_leaves]`` (``O(num_pairs * num_leaves^2)``: for small
        inputs)."""
        h = self.hierarchy
        parent = h.parent.cpu()
        mu = self.mu.detach().double().cpu()
        members = _membership(h)                                  # [num_nodes, L]
        # prefix[A] = product of mu over A's proper ancestors below the root
        prefix = torch.ones_like(mu)
        for node in _top_down(parent):
            p = int(parent[node])
            if p >= 0 and int(parent[p]) >= 0:
                prefix[node] = prefix[p] * mu[p]
        src, dst = self.sibling_index.cpu()
        coef = prefix[src] * self.delta.detach().double().cpu()   # [P, H]
        theta = torch.einsum('ph,pi,pj->hij', coef, members[src], members[dst])
        if self.include_self:
            leaves = torch.arange(h.num_leaves)
            theta[:, leaves, leaves] = (prefix[:h.num_leaves] * mu[:h.num_leaves]).t()
        return theta

    def row(self, leaf: int) -> Tensor:
        r"""One row of :math:`\hat\theta`, the attention of leaf :obj:`leaf`
        over all leaves, ``[heads, num_leaves]`` float64, in
        ``O(num_leaves * depth)``: an attention map of one query over a large
        point cloud, where :meth:`dense` would not fit."""
        h = self.hierarchy
        if not 0 <= leaf < h.num_leaves:
            raise ValueError(f"'leaf' must be in [0, {h.num_leaves}), got {leaf}")
        parent = h.parent.cpu()
        mu = self.mu.detach().double().cpu()
        src, dst = self.sibling_index.cpu()
        delta = self.delta.detach().double().cpu()
        # the leaf's ancestors from the top (below the root) down to the leaf
        path, node = [], leaf
        while int(parent[node]) >= 0:
            path.append(node)
            node = int(parent[node])
        path.reverse()
        # weight per leaf of every sibling block B of a path node A:
        # mu(N_1) ... mu(N_m) * delta(A, B), A = N_{m+1}
        block = torch.zeros(h.num_nodes, mu.size(1), dtype=torch.float64)
        prefix = torch.ones(mu.size(1), dtype=torch.float64)
        for node in path:
            pairs = src == node
            block[dst[pairs]] = prefix * delta[pairs]
            prefix = prefix * mu[node]
        # each other leaf lies in exactly one such block: sum over its ancestors
        out = block[:h.num_leaves].clone()
        node = torch.arange(h.num_leaves)
        while bool((node >= 0).any()):
            node = torch.where(node >= 0, parent[node.clamp(min=0)], -1)
            out += torch.where((node >= 0).unsqueeze(-1), block[node.clamp(min=0)], 0.0)
        if self.include_self:
            out[leaf] = prefix  # prod of mu down to and including the leaf
        return out.t()

    def plot(self, path: Optional[str] = None, head: int = 0, ax=None):
        r"""Heatmap of :math:`\hat\theta` for one head, leaves in tree order,
        with the leaf span of every internal node drawn as a block boundary.
        Writes a PNG to :obj:`path` when given; returns the matplotlib axes."""
        import matplotlib
        if path is not None and ax is None:
            matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        h = self.hierarchy
        order = _tree_order(h)
        theta = self.dense()[head][order][:, order]
        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 5))
        image = ax.imshow(theta.numpy(), cmap='viridis', interpolation='nearest')
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        position = torch.empty(h.num_leaves, dtype=torch.long)
        position[order] = torch.arange(h.num_leaves)
        members = _membership(h)
        depth = node_depth(h.parent.cpu())[0]
        for node in range(h.num_leaves, h.num_nodes):
            span = position[members[node].bool()]
            lo, hi = int(span.min()) - 0.5, int(span.max()) + 0.5
            width = max(0.5, 2.0 - 0.5 * int(depth[node]))
            ax.add_patch(matplotlib.patches.Rectangle(
                (lo, lo), hi - lo, hi - lo, fill=False, edgecolor='white',
                linewidth=width))
        if h.num_leaves <= 40:
            ax.set_xticks(range(h.num_leaves), [str(i) for i in order.tolist()])
            ax.set_yticks(range(h.num_leaves), [str(i) for i in order.tolist()])
        ax.set_title(f'HSA attention, head {head}')
        ax.set_xlabel('attended leaf')
        ax.set_ylabel('attending leaf')
        if path is not None:
            (fig or ax.figure).savefig(path, dpi=120, bbox_inches='tight')
        return ax


def hsa_weights(q: Tensor, k: Tensor, hierarchy: Hierarchy,
                pos: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                include_self: bool = False, causal: bool = False,
                scale: Optional[float] = None) -> AttentionWeights:
    r"""The block weights of :func:`hsa_geo.hsa` for the same arguments
    (without values), computed by the same dynamic program, detached from
    autograd."""
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy, got "
                        f"{type(hierarchy).__name__}")
    check_inputs(q, k, k, pos, bias)
    hierarchy.check_intact()
    check_sizes(q, pos, bias, hierarchy)
    include_self, causal, scale = check_options(q, include_self, causal, scale)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k = q.detach().to(dtype), k.detach().to(dtype)
    pos = None if pos is None else pos.detach().to(dtype)
    bias = None if bias is None else bias.detach().to(dtype)
    heads = q.size(1)
    layout = hierarchy.layout
    recorder = Recorder(pair_weights=q.new_zeros(hierarchy.num_pairs, heads))
    with torch.no_grad():
        _, (pieces, *_) = forward_pass(
            layout, Config(include_self, causal, scale, 0.0, needs_guard(q, k, pos, bias)), q, k,
            q.new_zeros(q.size(0), heads, 1), pos, bias, recorder)
    # nodes without siblings (roots, the nodes inside unary chains) keep
    # everything; a compiled node's share belongs to the node heading its chain
    mu = q.new_ones(hierarchy.num_nodes, heads)
    for piece in pieces:
        c = piece.size_class
        real = (c.weight[piece.f0:piece.f1, piece.i0:piece.i1] > 0).reshape(-1)
        nodes = layout.heading_nodes(c, piece.child_rows[real])
        mu[nodes] = piece.mu.permute(1, 2, 0).reshape(-1, heads)[real]
    return AttentionWeights(hierarchy.sibling_index, recorder.pair_weights, mu,
                            hierarchy, include_self)


def _leaf_counts(h: Hierarchy) -> Tensor:
    r"""``[num_nodes]`` the number of leaves below (or at) every node."""
    parent = h.parent
    counts = torch.zeros(h.num_nodes, dtype=torch.long, device=parent.device)
    node = torch.arange(h.num_leaves, device=parent.device)
    for _ in range(h.depth + 1):
        counts.index_add_(0, node, torch.ones_like(node))
        node = parent[node]
        node = node[node >= 0]
    return counts


def _membership(h: Hierarchy) -> Tensor:
    r"""``[num_nodes, num_leaves]`` float64, 1 where the node holds the leaf."""
    parent = h.parent.cpu()
    out = torch.zeros(h.num_nodes, h.num_leaves, dtype=torch.float64)
    node = torch.arange(h.num_leaves)
    leaves = torch.arange(h.num_leaves)
    while node.numel():
        out[node, leaves] = 1
        up = parent[node]
        keep = up >= 0
        node, leaves = up[keep], leaves[keep]
    return out


def _top_down(parent: Tensor):
    return torch.argsort(node_depth(parent.cpu())[0], stable=True).tolist()


def _tree_order(h: Hierarchy) -> Tensor:
    r"""Leaves in depth-first order (children by node index)."""
    parent = h.parent.cpu().tolist()
    children = [[] for _ in parent]
    for node, p in enumerate(parent):
        if p >= 0:
            children[p].append(node)
    out = []
    stack = [r for r in range(len(parent)) if parent[r] < 0][::-1]
    while stack:
        node = stack.pop()
        if node < h.num_leaves:
            out.append(node)
        stack.extend(children[node][::-1])
    return torch.tensor(out, dtype=torch.long)


def padded_attention_weights(q: Tensor, k: Tensor, hierarchy: Hierarchy, valid: Tensor,
                             include_self: bool = False, causal: bool = False,
                             scale: Optional[float] = None) -> Tensor:
    r"""The HSA attention matrix of every sequence of a padded batch, as
    softmax attention modules return theirs: ``[batch, heads, length,
    length]``, zero in padded rows and columns.

    The leaves of :obj:`hierarchy` are the valid positions ``valid [batch,
    length]`` in row-major order, and each tree lies inside one row.  The
    weights come from the dynamic program itself, run with one-hot values
    (row :math:`i` of :math:`\hat\theta V` with :math:`V = I` is row :math:`i`
    of :math:`\hat\theta`), so they are exact, differentiable, and cost
    :math:`O(N \cdot \text{length})` memory, the size of the result."""
    if valid.dim() != 2 or valid.dtype != torch.bool:
        raise ValueError(f"'valid' must be a bool mask [batch, length], got "
                         f"{valid.dtype} of shape {list(valid.shape)}")
    batch, length = valid.shape
    rows, cols = valid.nonzero(as_tuple=True)
    if rows.numel() != hierarchy.num_leaves:
        raise ValueError(f"'valid' has {rows.numel()} valid positions but the hierarchy "
                         f"has {hierarchy.num_leaves} leaves")
    # a tree that spans two rows has weights no [batch, length, length] holds
    parent = hierarchy.parent
    node = torch.arange(hierarchy.num_leaves, device=parent.device)
    for _ in range(hierarchy.depth):
        up = parent[node]
        node = torch.where(up < 0, node, up)
    low = torch.full((hierarchy.num_nodes, ), batch, device=parent.device)
    high = torch.full((hierarchy.num_nodes, ), -1, device=parent.device)
    low.scatter_reduce_(0, node, rows.to(parent.device), 'amin')
    high.scatter_reduce_(0, node, rows.to(parent.device), 'amax')
    if bool((low[node] != high[node]).any()):
        raise ValueError("the hierarchy has a tree whose leaves lie in several rows of "
                         "the batch; per-sequence attention weights do not exist for it")
    heads = q.size(1)
    one_hot = torch.nn.functional.one_hot(cols, length).to(q.dtype)
    values = one_hot.unsqueeze(1).expand(-1, heads, -1).contiguous()
    theta = hsa(q, k, values, hierarchy, include_self=include_self, causal=causal,
                scale=scale)                                   # [N, heads, length]
    out = theta.new_zeros(batch, length, heads, length)
    out[rows, cols] = theta
    return out.permute(0, 2, 1, 3)
