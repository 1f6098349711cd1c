"""Checks that refuse bad input with a message naming the parameter, before anything changes."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, np.ndarray) else "an array"


def check_param_array(label: str, array: Any) -> np.ndarray:
    """A parameter must be updatable in place: anything else would silently lose the update."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(array).__name__}")
    if not array.dtype.isnative:
        raise TypeError(f"{label} has non-native byte order ({array.dtype.str}); convert it once with "
                        "astype(its dtype.newbyteorder('='))")
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{label} has dtype {array.dtype}; fastoptim updates float32 and float64 arrays")
    if not array.flags.writeable:
        raise ValueError(f"{label} is read-only; the optimizer updates parameters in place")
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise ValueError(f"{label} is not contiguous (a strided view); fastoptim never copies a parameter, "
                         "since the update would be lost: pass the contiguous array it views")
    return array


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def check_like_param(label: str, array: Any, param: np.ndarray) -> np.ndarray:
    """An array the kernels read or write beside `param` (a gradient, a state array): its
    dtype, shape and memory order, in the words of the native step's own check."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype != param.dtype:
        raise TypeError(f"{label} has dtype {array.dtype}; its parameter is {param.dtype}")
    if array.shape != param.shape:
        raise ValueError(f"{label} has shape {_shape(array.shape)}; its parameter has shape {_shape(param.shape)}")
    fortran = param.flags.f_contiguous and not param.flags.c_contiguous
    if not (array.flags.f_contiguous if fortran else array.flags.c_contiguous):
        contiguous = array.flags.c_contiguous or array.flags.f_contiguous
        problem = "not in its parameter's memory order" if contiguous else "not contiguous"
        raise ValueError(f"{label} is {problem} ({'Fortran' if fortran else 'C'}-contiguous expected)")
    return array


def check_state_array(label: str, array: Any, param: np.ndarray) -> np.ndarray:
    """A state array the kernels update beside `param`: like it, and writable."""
    check_like_param(label, array, param)
    if not array.flags.writeable:
        raise ValueError(f"{label} is read-only; the optimizer updates its state in place")
    return array


def _extent(array: np.ndarray) -> tuple[int, int]:
    start = int(array.__array_interface__["data"][0])
    return start, start + array.nbytes


def check_disjoint(labels: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    """No parameter may be given twice or share memory with another."""
    seen: dict[int, str] = {}
    for label, array in zip(labels, arrays):
        if id(array) in seen:
            raise ValueError(f"{label} is the same array as {seen[id(array)]}; each parameter and state array "
                             "must be given once and share no memory")
        seen[id(array)] = label
    spans = sorted((_extent(a) + (label,) for label, a in zip(labels, arrays) if a.nbytes), key=lambda s: s[0])
    for (_, end, label), (start, _, other) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"{label} and {other} share memory; each parameter and state array must own its elements")


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in [low, high] (or open at either end)."""
    kind = type(value)
    if kind is not float and kind is not int:  # the common cases skip the slow ABC check
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {number!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {number!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    if value is not True and value is not False and not isinstance(value, np.bool_):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_betas(name: str, value: Any, *, count: int = 2) -> tuple[float, ...]:
    """A tuple of `count` coefficients, each in [0, 1)."""
    if type(value) is not tuple and (not isinstance(value, Sequence) or isinstance(value, str)) or len(value) != count:
        raise TypeError(f"{name} must be a tuple of {count} numbers, got {_describe(value)}")
    return tuple(check_real(f"{name}[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(value))


def check_int(name: str, value: Any, *, low: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


