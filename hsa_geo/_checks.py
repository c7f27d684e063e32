r"""Argument checks shared by the public entry points: each raises a
:class:`TypeError` or :class:`ValueError` that names the argument, what was
expected and what was found."""
from __future__ import annotations

import math
import operator
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['as_int', 'as_bool', 'as_finite_float', 'as_branching', 'as_even_dim',
           'as_probability', 'as_kwargs', 'as_module_or_none', 'check_finite',
           'check_node_features', 'is_index_dtype', 'as_in_channels', 'versions']


def as_int(value, name: str, minimum: Optional[int] = None,
           maximum: Optional[int] = None) -> int:
    r""":obj:`value` as a Python int.  Any integral scalar is accepted (Python
    and numpy integers, 0-d integer tensors); floats, bools and anything else
    raise :class:`TypeError`, values outside ``[minimum, maximum]``
    :class:`ValueError`."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dim() > 1 or not is_index_dtype(value):
            raise TypeError(f"'{name}' must be an integer, got a tensor of shape "
                            f"{list(value.shape)} and dtype {value.dtype}")
        value = int(value)
    elif isinstance(value, bool) or type(value).__name__ == 'bool_':
        raise TypeError(f"'{name}' must be an integer, got the bool {value!r}")
    else:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"'{name}' must be an integer, got {value!r} of type "
                            f"{type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"'{name}' must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"'{name}' must be at most {maximum}, got {value}")
    return value


def as_bool(value, name: str) -> bool:
    r""":obj:`value` as a Python bool; only ``True``/``False`` (and numpy
    bools) are accepted, so that a string such as ``'no'`` is not silently
    taken as true."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == 'bool_':  # numpy.bool_
        return bool(value)
    raise TypeError(f"'{name}' must be True or False, got {value!r} of type "
                    f"{type(value).__name__}")


def as_finite_float(value, name: str, positive: bool = False) -> float:
    r""":obj:`value` as a finite Python float (NaN and infinities raise
    :class:`ValueError`)."""
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"'{name}' must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"'{name}' must be a number, got {value!r} of type "
                        f"{type(value).__name__}") from None
    if torch.compiler.is_compiling():
        # a module's float may be symbolic under torch.compile(dynamic=True),
        # where math.isfinite breaks the graph; the engine's operator checks
        # its scale and dropout at run time instead
        return out
    if not math.isfinite(out):
        raise ValueError(f"'{name}' must be finite, got {out}")
    if positive and out <= 0:
        raise ValueError(f"'{name}' must be positive, got {out}")
    return out


def check_finite(tensor: Tensor, name: str) -> None:
    r"""Raises :class:`ValueError` when :obj:`tensor` holds NaN or infinite
    entries (one host sync: for builders, never on a layer's hot path)."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise ValueError(f"'{name}' must be finite, found {tensor[tuple(bad)].item()} "
                         f"at index {bad}")


def as_branching(branching, name: str = 'branching', minimum: int = 2) -> Tuple[int, ...]:
    r"""Window sizes as a tuple of Python ints, each at least :obj:`minimum`
    (``2.5`` is refused, not rounded)."""
    if isinstance(branching, (str, bytes)) or not hasattr(branching, '__len__') \
            or len(branching) == 0:
        raise ValueError(f"'{name}' must be a non-empty sequence of integers >= "
                         f"{minimum}, got {branching!r}")
    return tuple(as_int(b, f'{name}[{i}]', minimum=minimum) for i, b in enumerate(branching))


def as_even_dim(value, name: str = 'pos_dim') -> int:
    r"""The size of sinusoidal / Fourier position vectors: a positive even
    integer (sines and cosines in pairs)."""
    value = as_int(value, name)
    if value < 2 or value % 2:
        raise ValueError(f"'{name}' must be a positive even number, got {value}")
    return value


def as_probability(value, name: str = 'dropout') -> float:
    r"""A dropout probability: a finite float in ``[0, 1)``."""
    value = as_finite_float(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{name}' must be a probability in [0, 1), got {value}")
    return value


def as_kwargs(value, name: str) -> dict:
    r"""Keyword arguments for another callable: a dict (copied) or
    :obj:`None` (an empty dict)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"'{name}' must be a dict of keyword arguments or None, got "
                        f"{value!r} of type {type(value).__name__}")
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise TypeError(f"'{name}' must have string keys (argument names), got {bad[0]!r}")
    return dict(value)


def as_module_or_none(value, name: str):
    r""":obj:`value` when it is a :class:`torch.nn.Module` instance or
    :obj:`None`; options are modules, not strings (PyG's convention)."""
    if value is None or isinstance(value, torch.nn.Module):
        return value
    if isinstance(value, type) and issubclass(value, torch.nn.Module):
        raise TypeError(f"'{name}' must be a torch.nn.Module instance or None, got the "
                        f"class {value.__name__}: pass an instance, e.g. "
                        f"{value.__name__}(channels, channels)")
    raise TypeError(f"'{name}' must be a torch.nn.Module (e.g. a MessagePassing layer "
                    f"such as GINConv(...)) or None, got {value!r} of type "
                    f"{type(value).__name__}")


def check_node_features(x, name: str, channels: Optional[int] = None,
                        channels_name: str = 'channels', num_rows: Optional[int] = None,
                        rows_of: str = 'the hierarchy') -> None:
    r"""Checks that :obj:`x` is a floating-point ``[num_nodes, channels]``
    tensor.  Its width is compared with :obj:`channels` (when positive) and
    its rows with :obj:`num_rows` (when given) in eager mode only: under
    :func:`torch.compile` a comparison with a Python int would bake that size
    into the graph."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a Tensor [num_nodes, {channels_name}], got "
                        f"{type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"'{name}' must have shape [num_nodes, {channels_name}], got "
                         f"{list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor, got dtype {x.dtype}")
    if torch.compiler.is_compiling():
        return
    if channels is not None and channels > 0 and x.size(1) != channels:
        raise ValueError(f"'{name}' has {x.size(1)} channels but the layer was built "
                         f"with {channels_name}={channels}")
    if num_rows is not None and x.size(0) != num_rows:
        raise ValueError(f"'{name}' has {x.size(0)} rows but {rows_of} has {num_rows} "
                         f"leaves")


def is_index_dtype(tensor: Tensor) -> bool:
    r"""Whether :obj:`tensor` holds integers (not floats, complex or bools):
    what an index tensor (``parent``, ``batch``, ``edge_index``) must be."""
    return not (tensor.is_floating_point() or tensor.is_complex()
                or tensor.dtype == torch.bool)


def as_in_channels(value, name: str = 'in_channels') -> int:
    r"""An input size: a positive int, or ``-1`` to infer it from the first
    input (a lazy layer)."""
    value = as_int(value, name)
    if value < 1 and value != -1:
        raise ValueError(f"'{name}' must be a positive int, or -1 to infer it from the "
                         f"first input (lazy), got {value}")
    return value


def versions(*tensors: Tensor) -> Optional[Tuple[int, ...]]:
    r"""The version counters of :obj:`tensors` (bumped by every in-place
    write, through views too); :obj:`None` for inference tensors, which
    have none."""
    try:
        return tuple(t._version for t in tensors)
    except RuntimeError:
        return None
