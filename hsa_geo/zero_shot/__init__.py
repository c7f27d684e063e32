r"""Zero-shot Hierarchical Self-Attention inside trained transformers.

Amizadeh et al. (NeurIPS 2025, Section 5.3, Appendix L) replace softmax
attention in some layers of fine-tuned transformers by HSA over fixed windows
of tokens, without training: attention FLOPs fall 57-98% and accuracy drops
by 0.5-5.6 points on six tasks, but collapses on the sentence-pair task QNLI
(0.927 to 0.507).  :class:`~hsa_geo.zero_shot.tokens.SegmentForest` keeps the
windows of a sentence pair inside its segments.

.. code-block:: python

    from hsa_geo.zero_shot import inject, restore
    inject(model, layers=[3, 4, 5], hierarchy=(2, 4, 8, 16))  # HF encoder or PyG model
    ...
    restore(model)
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch.nn import Module, MultiheadAttention

from hsa_geo.zero_shot.flops import AttentionFlops, attention_flops
from hsa_geo.zero_shot.huggingface import attention_layers, inject_huggingface, restore_huggingface
from hsa_geo.zero_shot.pyg import HSAMultiheadAttention, inject_pyg, restore_pyg, set_hierarchy
from hsa_geo.zero_shot.tokens import SegmentForest, segment_parent, sequence_parent, token_forest

__all__ = ['inject', 'restore', 'attention_flops', 'AttentionFlops', 'HSAMultiheadAttention',
           'set_hierarchy', 'sequence_parent', 'token_forest', 'SegmentForest', 'segment_parent',
           'attention_layers',
           'inject_huggingface', 'restore_huggingface', 'inject_pyg', 'restore_pyg']


def _is_huggingface(model: Module) -> bool:
    return any(hasattr(getattr(m, 'config', None), '_attn_implementation')
               for m in model.modules())


def inject(model: Module, layers: Optional[Sequence[int]] = None, hierarchy=(2, 4, 8, 16),
           include_self: bool = True, special_tokens: str = 'ends') -> Module:
    r"""Replaces softmax attention by HSA in trained models, in place, with no
    training: the model's own query/key/value projections, scaling and output
    projection are kept; only the attention weights change.

    * Hugging Face encoders of the BERT / RoBERTa family (also inside a
      sentence-transformers model): an attention function is registered in
      transformers' ``AttentionInterface`` (and ``AttentionMaskInterface``)
      and the chosen layers run HSA, the others transformers' SDPA.
      Padding never attends and is never attended to: each sequence's tree
      holds only its valid tokens.
    * Any other module: its ``torch.nn.MultiheadAttention`` modules (e.g.
      inside PyG's ``GPSConv``) become :class:`HSAMultiheadAttention`, in
      place (same parameters and ``state_dict``; still ``MultiheadAttention``
      instances).

    Args:
        model (Module): The trained model.
        layers (Sequence[int], optional): Indices of the attention layers to
            replace (in layer order); all when :obj:`None`.
        hierarchy (tuple or str or Callable or Hierarchy, optional): Bottom-up
            window sizes, e.g. ``(2, 4, 8, 16)``: windows of 2 tokens, windows
            of 4 of those, ..., everything left under one root per sequence;
            a length that is not a product of the factors gives shorter last
            windows.  ``'flat'``: one family per sequence (with
            :obj:`include_self`, exactly the original attention).  A callable
            ``(input_ids, mask) -> Hierarchy`` (PyG: ``mask -> Hierarchy``)
            whose leaves are the valid tokens ``x[mask]`` in batch-major order,
            or a fixed :class:`~hsa_geo.Hierarchy`. (default: ``(2, 4, 8, 16)``)
        include_self (bool, optional): Let a token attend to itself; trained
            transformers do, the paper's HSA does not. (default: :obj:`True`)
        special_tokens (str, optional): Hugging Face only.  ``'ends'``: the
            first and last valid token of each sequence (``[CLS]`` and
            ``[SEP]``, ``<s>`` and ``</s>``) are not windowed but are children
            of the root beside the top windows, so they see the whole sequence
            at the coarsest level; a ``[SEP]`` between the segments of a
            sentence pair is windowed like any token.  ``'none'``: every
            token is windowed. (default: ``'ends'``)
    """
    if _is_huggingface(model):
        return inject_huggingface(model, layers, hierarchy, include_self, special_tokens)
    if isinstance(model, MultiheadAttention) or any(
            isinstance(m, MultiheadAttention) for m in model.modules()):
        return inject_pyg(model, layers, 'flat' if hierarchy is None else hierarchy,
                          include_self)
    raise TypeError(f"'model' must be a Hugging Face encoder or contain a "
                    f"torch.nn.MultiheadAttention, got {type(model).__name__}")


def restore(model: Module) -> Module:
    r"""Undoes :func:`inject`: the original attention everywhere."""
    if _is_huggingface(model):
        restore_huggingface(model)
    return restore_pyg(model)
