r"""What every hierarchy builder shares: a ``repr`` that shows every argument
that changes the output, and a stable digest of it.

PyG datasets key their processed caches on the pre-transform (PyG itself
compares ``repr(pre_transform)`` with the one a cache was built with), so a
``repr`` that leaves out an argument lets two different hierarchies share one
cache.  Builders therefore list their configuration once, in
:meth:`HierarchyTransform.config`, and the ``repr`` and :func:`config_digest`
are derived from it.
"""
from __future__ import annotations

import hashlib
import re
import types
from typing import Any, Dict

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

__all__ = ['HierarchyTransform', 'describe', 'config_digest']

_ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+')


class HierarchyTransform(BaseTransform):
    r"""Base class of the hierarchy builders: subclasses return their
    output-changing arguments from :meth:`config`, in signature order; the
    ``repr`` is ``Name(arg=value, ...)`` over them, PyG's style."""

    def config(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def num_nodes_of(data, kind: str, empty: str) -> int:
        r"""The node count of :obj:`data`, which must be a non-empty PyG
        :class:`~torch_geometric.data.Data`: a :class:`TypeError` names the
        :obj:`kind` of input the builder takes, a :class:`ValueError` says
        what an :obj:`empty` input lacks."""
        if not isinstance(data, Data):
            raise TypeError(f"'data' must be a torch_geometric.data.Data {kind}, got "
                            f"{type(data).__name__}")
        num_nodes = data.num_nodes
        if not num_nodes:
            raise ValueError(f"'data' has no {empty}")
        return num_nodes

    def __repr__(self) -> str:
        args = ', '.join(f'{key}={describe(value)}' for key, value in self.config().items())
        return f'{self.__class__.__name__}({args})'


def describe(value: Any) -> str:
    r"""A ``repr`` of a configuration value that is stable across processes:
    transforms by their own ``repr``, Hugging Face tokenizers by name and a
    digest of their vocabulary, plain functions (lambdas included) by their
    qualified name and a digest of their code, constants and closure, so that
    editing a function's body gives another description."""
    if isinstance(value, (list, tuple)):
        inner = ', '.join(describe(v) for v in value)
        return f'({inner},)' if isinstance(value, tuple) and len(value) == 1 else (
            f'({inner})' if isinstance(value, tuple) else f'[{inner}]')
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k!r}: {describe(v)}' for k, v in value.items()) + '}'
    if isinstance(value, BaseTransform):
        return repr(value)
    if hasattr(value, 'get_vocab') and hasattr(value, 'name_or_path'):
        vocab = sorted(value.get_vocab().items())
        digest = hashlib.sha1(repr(vocab).encode()).hexdigest()[:10]
        return f'{type(value).__name__}({value.name_or_path!r}, vocab={len(vocab)}:{digest})'
    if isinstance(value, (types.FunctionType, types.MethodType)):
        fn = value.__func__ if isinstance(value, types.MethodType) else value
        parts = [_code_key(fn.__code__)]
        for cell in fn.__closure__ or ():
            try:
                parts.append(describe(cell.cell_contents))
            except ValueError:  # an empty cell
                parts.append('<empty>')
        digest = hashlib.sha1('|'.join(parts).encode()).hexdigest()[:10]
        return f'{fn.__module__}.{fn.__qualname__}:{digest}'
    return repr(value)


def _code_key(code: types.CodeType) -> str:
    consts = [(_code_key(c) if isinstance(c, types.CodeType) else repr(c))
              for c in code.co_consts]
    return f'{code.co_code.hex()}|{consts}|{code.co_names}'


def config_digest(transform: Any) -> str:
    r"""12 hex digits of SHA-1 over ``repr(transform)``: the key of a
    processed cache.  A ``repr`` holding a memory address (an object without
    a ``repr`` of its own) differs in every process, so such a cache is
    rebuilt each time rather than risk a stale hit."""
    return hashlib.sha1(repr(transform).encode()).hexdigest()[:12]


def has_stable_repr(transform: Any) -> bool:
    r"""Whether ``repr(transform)`` is free of memory addresses."""
    return _ADDRESS.search(repr(transform)) is None
