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

import inspect
from typing import Callable, Optional

from torch import Tensor
from torch.utils.hooks import RemovableHandle
from torch_geometric.nn.conv import MessagePassing

__all__ = ['AttentionTap']


class AttentionTap(MessagePassing):
    r"""Runs only when a message hook is registered (an explainer is
    listening): one message per sibling pair carrying its coefficients
    ``alpha`` ``[num_pairs, heads]``, summed per attending node.  It holds no
    parameters and changes no output.

    It speaks only about the explained edges.  When PyG's
    :class:`~torch_geometric.explain.algorithm.AttentionExplainer` registers
    its hook, the tap reads the ``edge_index`` being explained (and the task
    level) from that call: it stays silent unless that ``edge_index`` is the
    hierarchy's :attr:`~hsa_geo.Hierarchy.sibling_index`, so that in a hybrid
    model (e.g. :class:`~hsa_geo.nn.HSAGPSConv`) explained over the graph's
    edges only the local layer's attention is collected, never HSA's pair
    weights as if they were edges'; and it refuses a node-level explanation
    over the sibling pairs (they join internal nodes, which a node-level
    explanation's subgraph of the leaves cannot hold) with a clear error.
    Set ``explain = False`` on it to keep every explainer away.
    """
    def __init__(self):
        super().__init__(aggr='add', flow='target_to_source', node_dim=0)
        # what the registering explainer explains: (edge_index, task level)
        self._explained: Optional[tuple] = None

    @property
    def listening(self) -> bool:
        return bool(self._message_forward_hooks) or bool(self._message_forward_pre_hooks)

    def register_message_forward_hook(self, hook: Callable) -> RemovableHandle:
        self._explained = _explained_by_caller(inspect.currentframe())
        handle = super().register_message_forward_hook(hook)
        return _Forgetting(handle, self)

    def speaks(self, sibling_index: Tensor) -> bool:
        r"""Whether the registered hooks should hear about these sibling
        pairs: yes unless the registering explainer explains another
        ``edge_index``; raises :class:`ValueError` for a node-level
        explanation over the pairs."""
        if self._explained is None:
            return True
        edge_index, level = self._explained
        if not _same_index(edge_index, sibling_index):
            return False
        if level == 'node':
            raise ValueError(
                "a node-level explanation of HSA over 'edge_index' = "
                "hierarchy.sibling_index cannot work: the sibling pairs join internal "
                "nodes (clusters), which a node-level explanation's subgraph of the leaves "
                "does not hold. Explain at task_level='graph', or read one leaf's attention "
                "with HSAConv.attention_weights(x, hierarchy).row(i)")
        return True

    def forward(self, sibling_index: Tensor, alpha: Tensor, num_nodes: int) -> Tensor:
        return self.propagate(sibling_index, alpha=alpha, size=(num_nodes, num_nodes))

    def message(self, alpha: Tensor) -> Tensor:
        return alpha


class _Forgetting(RemovableHandle):
    r"""The hook's handle; removing it also forgets what was explained."""
    def __init__(self, handle: RemovableHandle, tap: AttentionTap):
        self.__dict__.update(handle.__dict__)
        self._tap = tap

    def remove(self) -> None:
        super().remove()
        if not self._tap.listening:
            self._tap._explained = None


def _explained_by_caller(frame) -> Optional[tuple]:
    r"""``(edge_index, task level)`` when the caller registering a hook is an
    explainer algorithm collecting over an ``edge_index`` (PyG's
    ``AttentionExplainer._collect_attention_coefficients``), else
    :obj:`None`."""
    caller = frame.f_back if frame is not None else None
    try:
        if caller is None:
            return None
        owner = caller.f_locals.get('self')
        edge_index = caller.f_locals.get('edge_index')
        if not isinstance(edge_index, Tensor) or owner is None or \
                not hasattr(owner, 'model_config'):
            return None
        level = getattr(owner.model_config, 'task_level', None)
        return edge_index, getattr(level, 'value', level)
    finally:
        del caller, frame


def _same_index(a: Tensor, b: Tensor) -> bool:
    if a is b:
        return True
    return a.shape == b.shape and a.device == b.device and bool((a == b).all())
