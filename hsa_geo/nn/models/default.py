r"""The sentinel that stands for a model's default block (a model built with
``attention=DEFAULT`` builds its own; ``None`` switches the block off)."""
from __future__ import annotations

__all__ = ['DEFAULT']


class _Default:
    def __repr__(self) -> str:
        return 'DEFAULT'


#: The default block of a model (e.g. the attention block of
#: :class:`~hsa_geo.nn.HSAPointTransformer`, a pre-norm
#: :class:`~hsa_geo.nn.HSAEncoderLayer` per layer).
DEFAULT = _Default()
