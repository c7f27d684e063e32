r"""The numba source of the compiled forest's building passes (imported
only when first used, so that importing hsa_geo never needs numba):

* :func:`parent_from_edges`: child-to-parent edges (a hierarchy stored as
  ``HeteroData``) into a parent vector, with the checks of one parent per
  node, no childless cluster node and no orphan leaf;
* :func:`check_parent`: a parent vector's checks (indices in range, no leaf
  with children, no childless internal node, no cycle) and its nodes top-down;
* :func:`summarize`: a checked parent vector's depth, widest family, roots
  and the tree of every leaf, and its families (:func:`build_families`).

A check that fails returns a flag, never raises: the caller then runs the
readable PyTorch checks, which name the fault.  The families follow the
rules of :mod:`hsa_geo.engine.builder`: unary chains collapsed (a chain's
content is its bottom node, its place among its siblings its top node),
families ordered by (height, size, node id), the children of a family by
their heading node."""
import numpy as np
from numba import njit


@njit(cache=True)
def parent_from_edges(edges, seg_end, src_start, src_count, dst_start, dst_count,
                      num_nodes, num_leaves, root_leaves):
    r"""Edges ``[2, E]`` (child row, parent row; segment ``s`` ends at
    ``seg_end[s]`` and holds local indices of a child type starting at
    ``src_start[s]`` with ``src_count[s]`` nodes and of a parent type likewise)
    into a parent vector; the flag is False on an index out of range, a node
    with two parent edges, a childless node past the leaves or (unless
    ``root_leaves``) a leaf without a parent edge."""
    parent = np.full(num_nodes, -1, np.int64)
    children = np.zeros(num_nodes, np.int64)
    seg = 0
    for e in range(edges.shape[1]):
        while e >= seg_end[seg]:
            seg += 1
        c = np.int64(edges[0, e])
        p = np.int64(edges[1, e])
        if c < 0 or c >= src_count[seg] or p < 0 or p >= dst_count[seg]:
            return parent, False
        c += src_start[seg]
        p += dst_start[seg]
        if parent[c] >= 0:
            return parent, False
        parent[c] = p
        children[p] += 1
    for x in range(num_leaves, num_nodes):
        if children[x] == 0:
            return parent, False
    if not root_leaves:
        for x in range(num_leaves):
            if parent[x] < 0:
                return parent, False
    return parent, True


@njit(cache=True)
def _top_down(parent, children):
    r"""The nodes breadth first from the roots (roots in node order, children
    in node order) and how many were reached (fewer than all: a cycle)."""
    n = parent.shape[0]
    start = np.zeros(n + 1, np.int64)
    for x in range(n):
        start[x + 1] = start[x] + children[x]
    fill = start[:n].copy()
    kids = np.empty(max(1, start[n]), np.int64)
    for x in range(n):
        p = parent[x]
        if p >= 0:
            kids[fill[p]] = x
            fill[p] += 1
    order = np.empty(n, np.int64)
    tail = 0
    for x in range(n):
        if parent[x] < 0:
            order[tail] = x
            tail += 1
    head = 0
    while head < tail:
        x = order[head]
        head += 1
        for j in range(start[x], start[x + 1]):
            order[tail] = kids[j]
            tail += 1
    return order, tail


@njit(cache=True)
def _children(parent):
    n = parent.shape[0]
    children = np.zeros(n, np.int64)
    for x in range(n):
        if parent[x] >= 0:
            children[parent[x]] += 1
    return children


@njit(cache=True)
def check_parent(parent, num_leaves):
    r"""Whether a parent vector is a forest over ``num_leaves`` leaves, with
    its child counts and its nodes top-down (valid only when it is)."""
    n = parent.shape[0]
    children = np.zeros(n, np.int64)
    for x in range(n):
        p = parent[x]
        if p < -1 or p >= n or (p >= 0 and p < num_leaves):
            return False, children, children
        if p >= 0:
            children[p] += 1
    for x in range(num_leaves, n):
        if children[x] == 0:
            return False, children, children
    order, tail = _top_down(parent, children)
    return tail == n, children, order


@njit(cache=True)
def summarize(parent, num_leaves, children, order):
    r"""A checked forest's depth, widest family, roots (node order), the tree
    of every leaf among them, and its families."""
    n = parent.shape[0]
    rank = np.full(n, -1, np.int64)
    num_roots = 0
    for x in range(n):
        if parent[x] < 0:
            rank[x] = num_roots
            num_roots += 1
    roots = np.empty(num_roots, np.int64)
    for x in range(n):
        if parent[x] < 0:
            roots[rank[x]] = x
    depth = np.zeros(n, np.int64)
    tree = np.zeros(n, np.int64)
    deepest = 0
    for idx in range(n):
        x = order[idx]
        p = parent[x]
        if p >= 0:
            depth[x] = depth[p] + 1
            tree[x] = tree[p]
            deepest = max(deepest, depth[x])
        else:
            tree[x] = rank[x]
    widest = 0
    if n > num_leaves:
        for x in range(n):
            widest = max(widest, children[x])
    return (deepest, widest, roots, tree[:num_leaves].copy(),
            _families(parent, num_leaves, children, order))


@njit(cache=True)
def build_families(parent, num_leaves):
    r"""The families of a checked parent vector."""
    children = _children(parent)
    order, _ = _top_down(parent, children)
    return _families(parent, num_leaves, children, order)


@njit(cache=True)
def _families(parent, num_leaves, children, order):
    n = parent.shape[0]
    # the top of every node's unary chain, and its compiled parent
    top = np.empty(n, np.int64)
    for idx in range(n):
        x = order[idx]
        p = parent[x]
        top[x] = top[p] if p >= 0 and children[p] == 1 else x
    cparent = np.full(n, -1, np.int64)
    for x in range(n):
        if children[x] != 1:
            cparent[x] = parent[top[x]]
    # leaf counts and heights in the collapsed forest, bottom-up
    count = np.zeros(n, np.int64)
    height = np.zeros(n, np.int64)
    for x in range(num_leaves):
        count[x] = 1
    for idx in range(n - 1, -1, -1):
        x = order[idx]
        if parent[x] >= 0:
            count[parent[x]] += count[x]
        c = cparent[x]
        if c >= 0 and children[x] != 1:
            height[c] = max(height[c], height[x] + 1)
    # families: the branching internal nodes, by (height, size, id)
    num_fam = 0
    for x in range(num_leaves, n):
        if children[x] > 1:
            num_fam += 1
    families = np.empty(num_fam, np.int64)
    key = np.empty(num_fam, np.int64)
    f = 0
    for x in range(num_leaves, n):
        if children[x] > 1:
            families[f] = x
            key[f] = (height[x] * (n + 1) + children[x]) * (n + 1) + x
            f += 1
    families = families[np.argsort(key, kind='mergesort')]
    rank = np.full(n, -1, np.int64)
    for f in range(num_fam):
        rank[families[f]] = f
    # levels, child ranges, pair ranges
    levels = 0
    for f in range(num_fam):
        if f == 0 or height[families[f]] != height[families[f - 1]]:
            levels += 1
    level_ptr = np.zeros(levels + 1, np.int64)
    child_ptr = np.zeros(num_fam + 1, np.int64)
    pair_ptr = np.zeros(num_fam, np.int64)
    fam_parent = np.arange(num_fam)
    lev = 0
    pairs = 0
    width = 0
    for f in range(num_fam):
        if f > 0 and height[families[f]] != height[families[f - 1]]:
            lev += 1
            level_ptr[lev] = f
        b = children[families[f]]
        child_ptr[f + 1] = child_ptr[f] + b
        pair_ptr[f] = pairs
        pairs += b * (b - 1)
        width = max(width, b)
    level_ptr[levels] = num_fam
    # the children of every family, by heading node
    num_children = child_ptr[num_fam]
    members = np.empty(num_children, np.int64)
    member_key = np.empty(num_children, np.int64)
    m = 0
    for x in range(n):
        c = cparent[x]
        if c >= 0 and children[x] != 1:
            members[m] = x
            member_key[m] = rank[c] * (n + 1) + top[x]
            m += 1
    members = members[np.argsort(member_key, kind='mergesort')]
    ref = np.empty(num_children, np.int64)
    node = np.empty(num_children, np.int64)
    weight = np.empty(num_children, np.float64)
    log_count = np.empty(num_children, np.float64)
    for i in range(num_children):
        x = members[i]
        ref[i] = x if x < num_leaves else num_leaves + rank[x]
        node[i] = top[x]
        weight[i] = count[x] / count[cparent[x]]
        log_count[i] = np.log(np.float64(count[x]))
    # the roots of the collapsed forest, in node order
    num_root_nodes = 0
    num_root_leaves = 0
    for x in range(n):
        if children[x] != 1 and cparent[x] < 0:
            if x < num_leaves:
                num_root_leaves += 1
            else:
                num_root_nodes += 1
    root_nodes = np.empty(num_root_nodes, np.int64)
    root_leaves = np.empty(num_root_leaves, np.int64)
    a = 0
    b = 0
    for x in range(n):
        if children[x] != 1 and cparent[x] < 0:
            if x < num_leaves:
                root_leaves[b] = x
                b += 1
            else:
                root_nodes[a] = rank[x]
                a += 1
    return (num_fam, pairs, width, level_ptr, fam_parent, child_ptr, pair_ptr, ref, node,
            weight, log_count, root_nodes, root_leaves)
