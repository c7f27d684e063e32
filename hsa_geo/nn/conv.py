r"""The :class:`HSAConv` layer."""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import LayerNorm, ModuleDict
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset

from hsa_geo._checks import as_in_channels, as_int, as_probability
from hsa_geo.functional import hsa
from hsa_geo.hierarchy import Hierarchy
from hsa_geo.hierarchy_like import HierarchyLike
from hsa_geo.nn.explain import AttentionTap
from hsa_geo.weights import AttentionWeights, hsa_weights

__all__ = ['HSAConv']

_LEAF = '_leaf'  # the key of the single leaf type when inputs are plain tensors


class HSAConv(torch.nn.Module):
    r"""The Hierarchical Self-Attention layer of `"Hierarchical Self-Attention:
    Generalizing Neural Attention Mechanics to Multi-Scale Problems"
    <https://arxiv.org/abs/2509.15448>`_ (Amizadeh et al., NeurIPS 2025).

    Every leaf :math:`i` of the hierarchy gets queries, keys and values per
    head, :math:`q_i = \mathrm{LN}(W_Q x_i)`, :math:`k_i = \mathrm{LN}(W_K x_i)`,
    :math:`v_i = W_V x_i` (LayerNorm only with ``qk_norm``), and attends to the
    other leaves with the HSA weights :math:`\hat\theta_{ij}`: the
    row-stochastic matrix, constant on the hierarchy's blocks, closest in KL
    divergence to softmax attention with sibling scores

    .. math::
        s(A, B) = \frac{\rho_q(A) \cdot \rho_k(B)}{\sqrt{d}}
        + \epsilon(A) \cdot \epsilon(B)

    (:math:`\rho` are means over a node's leaves, :math:`\epsilon` the projected
    position vectors of the nodes).  The output is

    .. math::
        \mathbf{x}^{\prime}_i = W_O \, \big\Vert_{h=1}^{H}
        \sum_j \hat\theta^{(h)}_{ij} v^{(h)}_j \;+\; W_S \mathbf{x}_i,

    computed by the linear-time dynamic program :func:`hsa_geo.hsa`.

    For multi-modal input, :obj:`in_channels` (and :obj:`x`) are dictionaries
    over leaf node types; each leaf type gets its own projections into the
    common attention width, as in the paper, and the output is a dictionary
    over the same types.

    Args:
        in_channels (int or Dict[str, int]): Size of each input sample, or
            ``-1`` to derive it lazily; a dictionary per leaf node type for
            multi-modal input.
        out_channels (int): Size of each output sample per head.
        heads (int, optional): Number of attention heads. (default: :obj:`1`)
        concat (bool, optional): Concatenate the heads (else average them).
            (default: :obj:`True`)
        dropout (float, optional): Dropout probability on the attention
            weights between siblings, i.e. on the block weights
            :math:`\delta(A, B)` (see :func:`hsa_geo.hsa`), in training.
            (default: :obj:`0.0`)
        pos_channels (int or Dict, optional): Size of the node position
            vectors, projected per head by this layer: one integer (one
            projection for every node type), or a dictionary with one
            projection per key, a key being a node type or a tuple of node
            types that share the projection, e.g. ``{('token', 'sentence'):
            16, 'modality': 2}`` for 1D-grid positions at two levels and
            one-hot keys above them (the paper, Appendix F: one projection per
            position-embedding type). (default: :obj:`None`)
        include_self (bool, optional): Let a leaf attend to itself too; on a
            flat hierarchy this is exactly multi-head softmax attention.
            (default: :obj:`False`)
        causal (bool, optional): Siblings attend only to siblings of smaller
            node index. (default: :obj:`False`)
        qk_norm (bool, optional): LayerNorm on queries and keys after the
            projection, as the paper's encoder does. (default: :obj:`True`)
        bias (bool, optional): Learn additive biases in the projections.
            (default: :obj:`True`)
        root_weight (bool, optional): Add the skip connection
            :math:`W_S \mathbf{x}_i`. (default: :obj:`True`)
        query_residual (bool, optional): Add each head's (normalised) query
            to its attention output before the heads are combined, the
            residual of the paper's encoder. (default: :obj:`False`)
        proj_channels (int, optional): Output size of the projection
            :math:`W_O` after the heads are combined, e.g. the paper's encoder
            width when its attention width differs. (default: the combined
            heads' size)
    """
    def __init__(
        self,
        in_channels: Union[int, Dict[str, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        dropout: float = 0.0,
        pos_channels: Optional[Union[int, Dict[str, int]]] = None,
        include_self: bool = False,
        causal: bool = False,
        qk_norm: bool = True,
        bias: bool = True,
        root_weight: bool = True,
        query_residual: bool = False,
        proj_channels: Optional[int] = None,
    ):
        super().__init__()
        in_channels = _check_in_channels(in_channels)
        out_channels = as_int(out_channels, 'out_channels', minimum=1)
        heads = as_int(heads, 'heads', minimum=1)
        dropout = as_probability(dropout, 'dropout')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.pos_channels = pos_channels
        self.include_self = include_self
        self.causal = causal
        self.qk_norm = qk_norm
        self.root_weight = root_weight
        self.query_residual = query_residual
        self.dropout = dropout
        self.multimodal = isinstance(in_channels, dict)
        types = dict(in_channels) if self.multimodal else {_LEAF: in_channels}
        width = heads * out_channels
        combined = width if concat else out_channels
        if proj_channels is not None and (not isinstance(proj_channels, int)
                                          or proj_channels < 1):
            raise ValueError(f"'proj_channels' must be a positive int, got {proj_channels!r}")
        self.proj_channels = proj_channels
        self.out_dim = proj_channels or combined

        self.lin_query = ModuleDict({t: Linear(c, width, bias=bias) for t, c in types.items()})
        self.lin_key = ModuleDict({t: Linear(c, width, bias=bias) for t, c in types.items()})
        self.lin_value = ModuleDict({t: Linear(c, width, bias=bias) for t, c in types.items()})
        self.lin_out = Linear(combined, self.out_dim, bias=bias)
        if root_weight:
            self.lin_skip = ModuleDict({t: Linear(c, self.out_dim, bias=bias)
                                        for t, c in types.items()})
        else:
            self.lin_skip = None
        if qk_norm:
            self.norm_query = LayerNorm(out_channels)
            self.norm_key = LayerNorm(out_channels)
        else:
            self.norm_query = self.norm_key = None
        # node type -> key of its position projection in lin_pos
        self._pos_key: Dict[str, str] = {}
        if pos_channels is None:
            self.lin_pos = None
        elif isinstance(pos_channels, dict):
            projections = {}
            for types_, size in pos_channels.items():
                group = (types_, ) if isinstance(types_, str) else tuple(types_)
                if not group or not all(isinstance(t, str) for t in group):
                    raise TypeError(f"'pos_channels' keys must be node types or tuples of "
                                    f"node types, got {types_!r}")
                name = '|'.join(group)
                for t in group:
                    if t in self._pos_key:
                        raise ValueError(f"'pos_channels' names node type {t!r} twice")
                    self._pos_key[t] = name
                projections[name] = Linear(size, width, bias=False)
            self.lin_pos = ModuleDict(projections)
        else:
            self.lin_pos = Linear(pos_channels, width, bias=False)
        self.explain_tap = AttentionTap()  # hands alpha to PyG's explainers
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for child in self.children():
            reset(child)

    def forward(
        self,
        x: Union[Tensor, Dict[str, Tensor]],
        hierarchy,
        pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None,
        return_attention_weights: Optional[bool] = None,
    ):
        r"""Runs the layer.

        Args:
            x (Tensor or Dict[str, Tensor]): Leaf features ``[num_leaves,
                in_channels]`` in the hierarchy's leaf order, or a dictionary
                over leaf node types.
            hierarchy (Hierarchy): The compiled forest whose leaves are the
                rows of :obj:`x`, the part of a batch this layer takes in place
                of an ``edge_index``: ``batch.hierarchy`` of a
                :class:`~hsa_geo.loader.HierarchyLoader` batch, compiled once
                per batch and shared by every layer.
            pos (Tensor or Dict[str, Tensor], optional): Position vectors of
                all nodes ``[num_nodes, pos_channels]`` in the hierarchy's node
                order, or a dictionary over node types (types without an entry
                get zeros).
            return_attention_weights (bool, optional): Also return the
                attention weights in PyG's form, ``(out, (sibling_index,
                alpha))`` like :class:`~torch_geometric.nn.conv.TransformerConv`:
                the ordered sibling pairs :math:`(A, B)` of
                :attr:`Hierarchy.sibling_index` and ``alpha`` ``[num_pairs,
                heads]``, the share of :math:`A`'s attention that goes to the
                leaves of :math:`B` (see :mod:`hsa_geo.nn.explain`).  The block
                form, from which the full matrix follows, is
                :meth:`attention_weights`.  Computed by a second, detached pass
                of the dynamic program. (default: :obj:`None`)
        """
        _check_hierarchy(hierarchy)
        xs, query, key, value, pos_vectors = self._project(x, hierarchy, pos)
        out = hsa(query, key, value, hierarchy, pos=pos_vectors,
                  include_self=self.include_self, causal=self.causal,
                  dropout=self.dropout if self.training else 0.0)
        if self.query_residual:
            out = out + query
        out = out.flatten(1) if self.concat else out.mean(dim=1)
        out = self.lin_out(out)
        if self.lin_skip is not None:
            out = out + torch.cat([self.lin_skip[t](v) for t, v in xs.items()])
        if self.multimodal:
            out = dict(zip(xs, out.split([v.size(0) for v in xs.values()])))
        tap = self.explain_tap.listening and \
            self.explain_tap.speaks(hierarchy.sibling_pairs(query.size(0), query.device))
        if return_attention_weights or tap:
            # the Hierarchy whose pairs the attention ran over (ValueError
            # for LoneLeaves and a ShardedHierarchy, which have none here)
            hierarchy = hierarchy.pair_hierarchy(query.size(0), query.device)
            weights = hsa_weights(query, key, hierarchy, pos=pos_vectors,
                                  include_self=self.include_self, causal=self.causal)
            sibling_index, alpha = weights.edge_form()
            if tap:
                self.explain_tap(sibling_index, alpha, hierarchy.num_nodes)
            if return_attention_weights:
                return out, (sibling_index, alpha)
        return out

    @torch.no_grad()
    def attention_weights(self, x: Union[Tensor, Dict[str, Tensor]], hierarchy: Hierarchy,
                          pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None
                          ) -> AttentionWeights:
        r"""The layer's attention weights in block form, an
        :class:`~hsa_geo.weights.AttentionWeights` (``sibling_index``, per-leaf
        ``delta`` of each pair, per-node ``mu``; ``.dense()`` expands them to
        the full ``[heads, num_leaves, num_leaves]`` matrix, ``.row(i)`` gives
        one leaf's row, ``.plot()`` draws it), for the arguments of
        :meth:`forward`."""
        _check_hierarchy(hierarchy)
        _, query, key, _, pos_vectors = self._project(x, hierarchy, pos)
        hierarchy = hierarchy.pair_hierarchy(query.size(0), query.device)
        return hsa_weights(query, key, hierarchy, pos=pos_vectors,
                           include_self=self.include_self, causal=self.causal)

    def _project(self, x, hierarchy, pos):
        r"""The leaf inputs by type and the queries, keys, values and
        position vectors of the attention."""
        xs = self._leaf_inputs(x, hierarchy)
        # -1, not hierarchy.num_leaves: a Python int would be baked into a
        # compiled graph, and every batch of another size would compile again
        shape = (-1, self.heads, self.out_channels)
        query = torch.cat([self.lin_query[t](v) for t, v in xs.items()]).view(shape)
        key = torch.cat([self.lin_key[t](v) for t, v in xs.items()]).view(shape)
        value = torch.cat([self.lin_value[t](v) for t, v in xs.items()]).view(shape)
        if self.norm_query is not None:
            query, key = self.norm_query(query), self.norm_key(key)
        return xs, query, key, value, self._positions(pos, hierarchy, query)

    def _leaf_inputs(self, x, hierarchy: Hierarchy) -> Dict[str, Tensor]:
        if isinstance(x, tuple):
            raise TypeError("HSAConv attends among the leaves of one hierarchy and takes "
                            "no bipartite (x_src, x_dst) input; inside HeteroConv give it "
                            "a relation whose source and destination types are the same "
                            "(e.g. ('paper', 'hsa', 'paper') mapped to the hierarchy)")
        if not self.multimodal:
            if isinstance(x, dict):
                raise TypeError("this HSAConv was built for a single leaf type: pass "
                                "'x' as a Tensor (or build it with in_channels as a dict)")
            if _eager(hierarchy) and x.size(0) != hierarchy.num_leaves:
                raise ValueError(f"'x' has {x.size(0)} rows but the hierarchy has "
                                 f"{hierarchy.num_leaves} leaves")
            return {_LEAF: x}
        if not isinstance(x, dict):
            raise TypeError("this HSAConv was built for multi-modal input: pass 'x' "
                            "as a dict over leaf node types")
        if not hierarchy.leaf_types:
            raise ValueError("multi-modal input needs a hierarchy compiled with "
                             "Hierarchy.from_hetero (it records the leaf node types)")
        if set(x) != set(hierarchy.leaf_types):
            raise ValueError(f"'x' has leaf types {sorted(x)} but the hierarchy has "
                             f"{sorted(hierarchy.leaf_types)}")
        missing = [t for t in x if t not in self.lin_query]
        if missing:
            raise ValueError(f"no projection for leaf types {missing}; in_channels "
                             f"has {sorted(self.lin_query)}")
        out = {}
        for t in hierarchy.leaf_types:
            start, end = hierarchy.node_slices[t]
            if _eager(hierarchy) and x[t].size(0) != end - start:
                raise ValueError(f"'x[{t!r}]' has {x[t].size(0)} rows but the "
                                 f"hierarchy has {end - start} nodes of that type")
            out[t] = x[t]
        return out

    def _positions(self, pos, hierarchy: Hierarchy, like: Tensor) -> Optional[Tensor]:
        if pos is None:
            # LoneLeaves (attention off, the DeepSet baseline) has no pairs to place
            if self.lin_pos is not None and hierarchy.has_attention:
                raise ValueError(f"this HSAConv was built with pos_channels="
                                 f"{self.pos_channels!r} but 'pos' was not given: pass the "
                                 f"hierarchy's position vectors (e.g. the builder's 'pos' "
                                 f"attributes), or build the layer without pos_channels")
            return None
        if self.lin_pos is None:
            raise ValueError("'pos' was given but this HSAConv has no position "
                             "projection (set pos_channels)")
        shape = (-1, self.heads, self.out_channels)
        # scaled so that eps(A) . eps(B) is on the scale of q . k / sqrt(d)
        scale = self.out_channels ** -0.25
        if isinstance(pos, Tensor):
            if isinstance(self.lin_pos, ModuleDict):
                raise TypeError("pos_channels is a dict: pass 'pos' as a dict over "
                                "node types")
            if _eager(hierarchy) and pos.size(0) != hierarchy.num_nodes:
                raise ValueError(f"'pos' has {pos.size(0)} rows but the hierarchy has "
                                 f"{hierarchy.num_nodes} nodes")
            _check_pos_width(pos, self.lin_pos, 'pos')
            return self.lin_pos(pos).view(shape) * scale
        if not hierarchy.node_slices:
            raise ValueError("'pos' as a dict needs a hierarchy compiled with "
                             "Hierarchy.from_hetero")
        for t in pos:
            if t not in hierarchy.node_slices:
                raise ValueError(f"'pos' has node type {t!r}, not in the hierarchy")
        parts = []
        for t, (start, end) in hierarchy.node_slices.items():
            if t not in pos:  # no positions: zeros (this count is baked when compiled)
                parts.append(like.new_zeros(end - start, self.heads, self.out_channels))
                continue
            p = pos[t]
            if isinstance(self.lin_pos, ModuleDict) and t not in self._pos_key:
                raise ValueError(f"'pos' has node type {t!r} but pos_channels has no "
                                 f"entry for it (it has {sorted(self._pos_key)})")
            lin = self.lin_pos[self._pos_key[t]] if isinstance(self.lin_pos, ModuleDict) \
                else self.lin_pos
            if _eager(hierarchy) and p.size(0) != end - start:
                raise ValueError(f"'pos[{t!r}]' has {p.size(0)} rows but the hierarchy has "
                                 f"{end - start} nodes of that type")
            _check_pos_width(p, lin, f'pos[{t!r}]')
            parts.append(lin(p).view(shape) * scale)
        return torch.cat(parts)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads})')


def _check_in_channels(in_channels):
    r"""An input size: a positive int, ``-1`` (lazy), or a dict of them over
    leaf types."""
    if isinstance(in_channels, dict):
        if not in_channels:
            raise ValueError("'in_channels' is an empty dict; expected one input size per "
                             "leaf node type")
        return {t: as_in_channels(c, f'in_channels[{t!r}]')
                for t, c in in_channels.items()}
    if isinstance(in_channels, (tuple, list)):
        raise TypeError(f"'in_channels' must be an int (or -1 for lazy) or a dict over leaf "
                        f"node types, got {in_channels!r}: HSA is attention among the "
                        f"leaves of one hierarchy and takes no (source, target) pair of "
                        f"sizes as bipartite layers do")
    return as_in_channels(in_channels, 'in_channels')


def _check_pos_width(pos: Tensor, lin: Linear, name: str) -> None:
    if lin.in_channels > 0 and pos.size(-1) != lin.in_channels:
        raise ValueError(f"'{name}' has position vectors of size {pos.size(-1)} but this "
                         f"layer was built with pos_channels={lin.in_channels}; set "
                         f"pos_channels to the builder's pos_dim ({pos.size(-1)})")


def _eager(hierarchy) -> bool:
    # Size checks against the hierarchy's Python ints run in eager mode only:
    # under torch.compile they would specialise the graph to this batch (the
    # engine's operator checks the sizes at run time instead).
    return hierarchy.num_leaves is not None and not torch.compiler.is_compiling()


def _check_hierarchy(hierarchy) -> None:
    if not isinstance(hierarchy, HierarchyLike):
        raise TypeError(f"'hierarchy' must be a compiled Hierarchy, got "
                        f"{type(hierarchy).__name__}; HSA layers do not compile "
                        f"hierarchies: batch the samples with "
                        f"hsa_geo.loader.HierarchyLoader and pass batch.hierarchy (or "
                        f"call Hierarchy.from_hetero(data) once per batch)")
