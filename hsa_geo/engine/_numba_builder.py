r"""The numba source of :func:`hsa_geo.engine.families.families_from_parent`:
a validated parent vector compiled into the families of the fused CPU
kernels in one pass over the nodes, without building the padded layout
(imported only when first used, so that importing hsa_geo never needs
numba).  The same rules as :mod:`hsa_geo.engine.builder`: unary chains
collapsed (a chain's content is its bottom node, its place among its
siblings its top node), families ordered by (height, size, node id), the
children of a family by their heading node."""
import numpy as np
from numba import njit


@njit(cache=True)
def build_families(parent, num_leaves):
    n = parent.shape[0]
    children = np.zeros(n, np.int64)
    for x in range(n):
        if parent[x] >= 0:
            children[parent[x]] += 1
    # the nodes top-down (breadth first from the roots)
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
