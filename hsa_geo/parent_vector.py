r"""A parent vector checked and compiled: what :meth:`hsa_geo.Hierarchy.from_parent`
does before it holds the result.

:func:`check_parent` takes the user's vector (its type and shape, a copy of
our own on the CPU) and :func:`compile_forest` checks its values and
compiles it: in two passes of compiled code over the nodes when numba is
installed (:func:`hsa_geo.engine.forest.compile_parent`), else with the
PyTorch code below (pointer jumping), which also names the fault whenever the
compiled check finds one.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from hsa_geo._checks import as_int, is_index_dtype
from hsa_geo.engine.depth import node_depth
from hsa_geo.engine.forest import Compiled, Forest, compile_parent

__all__ = ['check_parent', 'compile_forest', 'flat_parent']


def check_parent(parent, num_leaves) -> Tuple[Tensor, int]:
    r"""The parent vector as a CPU int64 tensor of our own (a caller writing
    into its tensor later must not change a compiled hierarchy) and the
    number of leaves, checked for type, shape and range of :obj:`num_leaves`."""
    if not isinstance(parent, Tensor):
        try:
            parent = torch.as_tensor(parent)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"'parent' must be a LongTensor of shape "
                            f"[num_nodes], got {type(parent).__name__}") from e
        if parent.numel() == 0:
            parent = parent.long()
    if not is_index_dtype(parent):
        raise TypeError(f"'parent' must be an integer tensor, got dtype "
                        f"{parent.dtype}")
    if parent.dim() != 1:
        raise ValueError(f"'parent' must be one-dimensional [num_nodes], got "
                         f"shape {list(parent.shape)}")
    num_leaves = as_int(num_leaves, 'num_leaves')
    num_nodes = parent.numel()
    if num_leaves < 1:
        raise ValueError(f"'num_leaves' must be at least 1, got {num_leaves}")
    if num_leaves > num_nodes:
        raise ValueError(f"'num_leaves' ({num_leaves}) is larger than the "
                         f"number of nodes in 'parent' ({num_nodes})")
    return parent.detach().to(device='cpu', dtype=torch.long, copy=True), num_leaves


def compile_forest(parent: Tensor, num_leaves: int) -> Compiled:
    r"""Checks the values of a parent vector from :func:`check_parent` and
    compiles it.  Raises :class:`ValueError` naming the first fault: an index
    out of range, a leaf with children, a childless internal node, a cycle."""
    compiled = compile_parent(parent, num_leaves)
    if compiled is not None:
        return compiled
    _check_values(parent, num_leaves)
    depth = _depth(parent)
    num_nodes = parent.numel()
    children = torch.bincount(parent[parent >= 0], minlength=num_nodes)
    max_branching = int(children.max()) if num_nodes > num_leaves else 0
    roots, leaf_tree = _tree_of_leaves(parent, num_leaves)
    return Compiled(int(depth.max()), max_branching, roots, leaf_tree,
                    Forest(parent, num_leaves))


def _check_values(parent: Tensor, num_leaves: int) -> None:
    num_nodes = parent.numel()
    bad = (parent < -1) | (parent >= num_nodes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"'parent' holds an index out of range: parent[{i}] "
                         f"= {int(parent[i])}, expected -1 (root) or a node "
                         f"index in [0, {num_nodes - 1}]")
    has_parent = parent >= 0
    bad = has_parent & (parent < num_leaves)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"node {int(parent[i])} is a leaf (nodes 0.."
                         f"{num_leaves - 1} are the leaves) but is the parent "
                         f"of node {i} in 'parent'")
    num_children = torch.bincount(parent[has_parent], minlength=num_nodes)
    childless = num_children[num_leaves:] == 0
    if bool(childless.any()):
        i = int(childless.nonzero()[0]) + num_leaves
        raise ValueError(f"internal node {i} has no children (nodes "
                         f"{num_leaves}..{num_nodes - 1} are internal and "
                         f"need at least one child; leaves are 0.."
                         f"{num_leaves - 1})")


def _depth(parent: Tensor) -> Tensor:
    r"""Distance to the root by pointer jumping; raises on cycles."""
    depth, stuck = node_depth(parent)
    if bool(stuck.any()):
        i = int(stuck.nonzero()[0])
        # Walk the cycle once to name it.
        seen, j = [], i
        while j not in seen and len(seen) < 10:
            seen.append(j)
            j = int(parent[j])
        raise ValueError(f"'parent' contains a cycle (node {i} never reaches "
                         f"a root; e.g. {' -> '.join(map(str, seen))} -> ...)")
    return depth


def _tree_of_leaves(parent: Tensor, num_leaves: int) -> Tuple[Tensor, Tensor]:
    r"""The root node ids ``[num_roots]`` (in node order) and, for every leaf,
    the index of its tree among them ``[num_leaves]``, by pointer jumping."""
    nodes = torch.arange(parent.numel())
    top = torch.where(parent < 0, nodes, parent)
    for _ in range(max(1, math.ceil(math.log2(parent.numel() + 1))) + 1):
        top = top[top]
    roots = (parent < 0).nonzero().view(-1)
    tree_of_root = torch.full((parent.numel(), ), -1, dtype=torch.long)
    tree_of_root[roots] = torch.arange(roots.numel())
    return roots, tree_of_root[top[:num_leaves]]


def flat_parent(batch: Optional[Tensor], num_nodes) -> Tensor:
    r"""The parent vector of one flat family per graph (CPU int64): node
    ``i`` is a leaf whose parent is the root of graph ``batch[i]`` (all nodes
    under one root when :obj:`batch` is :obj:`None`).  Graphs without nodes
    (gaps in :obj:`batch`) get no root; the roots are in the order of the
    graph indices."""
    num_nodes = as_int(num_nodes, 'num_nodes', minimum=1)
    if batch is None:
        parent = torch.full((num_nodes + 1, ), num_nodes, dtype=torch.long)
        parent[-1] = -1
        return parent
    if not isinstance(batch, Tensor):
        raise TypeError(f"'batch' must be a LongTensor or None, got "
                        f"{type(batch).__name__}")
    if not is_index_dtype(batch):
        raise TypeError(f"'batch' must be an integer tensor (the graph index of "
                        f"every node), got dtype {batch.dtype}")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' must have shape [num_nodes={num_nodes}], got "
                         f"{list(batch.shape)}")
    cpu = batch.long().cpu()
    if bool((cpu < 0).any()):
        i = int((cpu < 0).nonzero()[0])
        raise ValueError(f"'batch' must hold graph indices >= 0, got batch[{i}] = "
                         f"{int(cpu[i])}")
    graphs, graph_of_node = torch.unique(cpu, return_inverse=True)
    return torch.cat([num_nodes + graph_of_node,
                      torch.full((graphs.numel(), ), -1, dtype=torch.long)])
