r"""HSA's attention for PyG's explainers.

PyG's :class:`~torch_geometric.explain.algorithm.AttentionExplainer` reads the
attention coefficients ``alpha`` of every
:class:`~torch_geometric.nn.conv.MessagePassing` module through its message
hooks, aligned with the explained ``edge_index``.  HSA passes no messages
along graph edges: its "edges" are the ordered sibling pairs
:math:`(A, B)` of :attr:`Hierarchy.sibling_index`, and its coefficient of a
pair is the block weight :math:`\alpha(A, B) = n(B)\,\delta(A, B)`, the share
of :math:`A`'s attention that goes to the leaves of :math:`B` (with the share
:math:`\mu(A)` that stays inside :math:`A`, :math:`\sum_B \alpha(A, B) +
\mu(A) = 1`).  :class:`AttentionTap` is the message-passing module inside
every :class:`HSAConv` that hands these coefficients to such hooks, so that
``AttentionExplainer`` explains an HSA model over ``edge_index =
hierarchy.sibling_index`` (graph-level tasks: the pairs join internal nodes,
which a node-level explanation's k-hop subgraph of the leaves cannot hold).

Edge masks (``GNNExplainer(edge_mask_type='object')``) mask the messages of
message-passing layers along the explained ``edge_index``; HSA sends none, so
in a hybrid model (e.g. :class:`HSAGPSConv`) an edge mask explains the local
layer's edges only, and an HSA-only model is explained by node (feature)
masks, which flow through the attention like any input.
"""
from __future__ import annotations

from torch import Tensor
from torch_geometric.nn.conv import MessagePassing

__all__ = ['AttentionTap']


class AttentionTap(MessagePassing):
    r"""Runs only when a message hook is registered (an explainer is
    listening): one message per sibling pair carrying its coefficients
    ``alpha`` ``[num_pairs, heads]``, summed per attending node.  It holds no
    parameters and changes no output."""
    def __init__(self):
        super().__init__(aggr='add', flow='target_to_source', node_dim=0)

    @property
    def listening(self) -> bool:
        return bool(self._message_forward_hooks) or bool(self._message_forward_pre_hooks)

    def forward(self, sibling_index: Tensor, alpha: Tensor, num_nodes: int) -> Tensor:
        return self.propagate(sibling_index, alpha=alpha, size=(num_nodes, num_nodes))

    def message(self, alpha: Tensor) -> Tensor:
        return alpha
