"""Checks that refuse bad input with a message naming the parameter, before anything changes."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, MutableMapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ._core import CODE_BLOCK

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, np.ndarray) else "an array"


def is_bfloat16_param(array: np.ndarray) -> bool:
    """A bfloat16 parameter (or gradient): ml_dtypes.bfloat16, never bare uint16 patterns."""
    dtype = array.dtype
    return dtype.itemsize == 2 and dtype.kind == "V" and dtype.name == "bfloat16"


def compute_dtype(param: np.ndarray) -> np.dtype:
    """The dtype a parameter's update computes in: float32 for bfloat16, else its own."""
    return np.dtype(np.float32) if is_bfloat16_param(param) else param.dtype


def check_param_array(label: str, array: Any) -> np.ndarray:
    """A parameter must be updatable in place: anything else would silently lose the update."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(array).__name__}")
    if not array.dtype.isnative:
        raise TypeError(f"{label} has non-native byte order ({array.dtype.str}); convert it once with "
                        "astype(its dtype.newbyteorder('='))")
    if array.dtype == np.uint16:
        raise TypeError(f"{label} has dtype uint16; bfloat16 parameters are ml_dtypes.bfloat16 arrays (pip install "
                        "\"fastoptim[bf16]\"), and bare uint16 bit patterns are not taken for them")
    if array.dtype not in _FLOAT_DTYPES and not is_bfloat16_param(array):
        raise TypeError(f"{label} has dtype {array.dtype}; fastoptim updates float32, float64 and bfloat16 "
                        "(ml_dtypes.bfloat16) arrays")
    if not array.flags.writeable:
        raise ValueError(f"{label} is read-only; the optimizer updates parameters in place")
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise ValueError(f"{label} is not contiguous (a strided view); fastoptim never copies a parameter, "
                         "since the update would be lost: pass the contiguous array it views")
    return array


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


_BFLOAT16_TEXT = "bfloat16 (ml_dtypes.bfloat16, or uint16 holding its bit patterns)"


def is_bfloat16_array(array: np.ndarray) -> bool:
    """An array the kernels read as bfloat16: ml_dtypes.bfloat16, or uint16 bit patterns."""
    dtype = array.dtype
    return dtype.itemsize == 2 and dtype.isnative and (dtype == np.uint16 or dtype.name == "bfloat16")


def check_dtype_and_shape(label: str, array: Any, param: np.ndarray, storage: str = "") -> np.ndarray:
    """An array of `param`'s dtype and shape (a saved state array, which is copied in), or with
    `storage` ``"bfloat16"`` of bfloat16 (ml_dtypes') or uint16 bit patterns, with ``"int8"`` of
    uint8 codes, with ``"float32"`` (a bfloat16 parameter's float32 state) of float32, and
    `param`'s shape."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(array).__name__}")
    if storage == "bfloat16":
        if not is_bfloat16_array(array):
            raise TypeError(f"{label} has dtype {array.dtype}; bfloat16 state is {_BFLOAT16_TEXT}")
    elif storage == "int8":
        if array.dtype != np.uint8:
            raise TypeError(f"{label} has dtype {array.dtype}; 8-bit state is uint8 codes")
    elif storage == "float32":
        if array.dtype != np.float32:
            raise TypeError(f"{label} has dtype {array.dtype}; it is float32 beside its {param.dtype} parameter")
    elif array.dtype != param.dtype:
        raise TypeError(f"{label} has dtype {array.dtype}; its parameter is {param.dtype}")
    if array.shape != param.shape:
        raise ValueError(f"{label} has shape {_shape(array.shape)}; its parameter has shape {_shape(param.shape)}")
    return array


def check_like_param(label: str, array: Any, param: np.ndarray, storage: str = "") -> np.ndarray:
    """An array the kernels read or write beside `param` (a gradient, a state array): its
    dtype (as `storage` says), shape and memory order, in the words of the native step's own check."""
    checked = check_dtype_and_shape(label, array, param, storage)
    fortran = param.flags.f_contiguous and not param.flags.c_contiguous
    if not (checked.flags.f_contiguous if fortran else checked.flags.c_contiguous):
        contiguous = checked.flags.c_contiguous or checked.flags.f_contiguous
        problem = "not in its parameter's memory order" if contiguous else "not contiguous"
        raise ValueError(f"{label} is {problem} ({'Fortran' if fortran else 'C'}-contiguous expected)")
    return checked


def check_state_array(label: str, array: Any, param: np.ndarray, storage: str = "") -> np.ndarray:
    """A state array the kernels update beside `param`: like it (stored as `storage` says), and writable."""
    checked = check_like_param(label, array, param, storage)
    if not checked.flags.writeable:
        raise ValueError(f"{label} is read-only; the optimizer updates its state in place")
    return checked


def check_absmax(label: str, array: Any, param: np.ndarray, writable: bool = True) -> np.ndarray:
    """The absmax array of an 8-bit state slot of `param`: float32, one per block of 256
    elements, contiguous (and writable, unless a saved copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise TypeError(f"{label} has dtype {array.dtype}; an absmax array is float32")
    blocks = -(-param.size // CODE_BLOCK)
    if array.shape != (blocks,):
        raise ValueError(f"{label} has shape {_shape(array.shape)}; its parameter's {param.size} elements make "
                         f"{blocks} blocks of 256, one absmax each")
    if writable and not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError(f"{label} must be a contiguous, writable array; the optimizer updates it in place")
    return array


def extent(array: np.ndarray) -> tuple[int, int]:
    """The addresses an array's elements span, [start, end)."""
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
    spans = sorted((extent(a) + (label,) for label, a in zip(labels, arrays) if a.nbytes), key=lambda s: s[0])
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


def check_tuple(name: str, value: Any, count: int) -> None:
    """A tuple (or other sequence, not a string) of `count` items."""
    if type(value) is not tuple and (not isinstance(value, Sequence) or isinstance(value, str)) or len(value) != count:
        raise TypeError(f"{name} must be a tuple of {count} numbers, got {_describe(value)}")


def check_betas(name: str, value: Any, *, count: int = 2) -> tuple[float, ...]:
    """A tuple of `count` coefficients, each in [0, 1)."""
    check_tuple(name, value, count)
    return tuple(check_real(f"{name}[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(value))


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    number = int(value)
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return number


# ---- what schedulers are given: torch-style param_groups, and hyper-parameters by name -------
Groups = Sequence[MutableMapping[str, Any]]

_ELEMENT = re.compile(r"(\w+)\[(\d+)\]")


@lru_cache(maxsize=64)
def split_param_name(name: str) -> tuple[str, int | None]:
    """"lr" -> ("lr", None); "betas[1]" -> ("betas", 1): the names check_param_name accepts."""
    match = _ELEMENT.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


def check_param_groups(optimizer: Any) -> Groups:
    groups = getattr(optimizer, "param_groups", None)
    if (not isinstance(groups, Sequence) or isinstance(groups, (str, bytes))
            or not all(isinstance(g, MutableMapping) for g in groups)):
        raise TypeError("optimizer must have a param_groups list of dicts, as fastoptim and torch optimizers "
                        f"do; got {type(optimizer).__name__}")
    if not groups:
        raise ValueError("optimizer.param_groups is empty")
    return groups


def check_param_name(groups: Groups, name: Any) -> str:
    """A hyper-parameter every group holds as a real number: "lr", or an element "betas[0]"."""
    if not isinstance(name, str):
        raise TypeError(f"param_name must be a str such as 'lr', 'weight_decay' or 'betas[0]', got "
                        f"{type(name).__name__}")
    key, index = split_param_name(name)
    for i, group in enumerate(groups):
        if key not in group:
            raise ValueError(f"param_name={name!r}: param_groups[{i}] has no {key!r}")
        value = group[key]
        if index is not None:
            if not isinstance(value, tuple):
                raise TypeError(f"param_name={name!r}: param_groups[{i}][{key!r}] is a {type(value).__name__}, "
                                "not a tuple")
            if index >= len(value):
                raise ValueError(f"param_name={name!r}: param_groups[{i}][{key!r}] has {len(value)} elements")
            value = value[index]
        check_real(f"param_groups[{i}][{name!r}]", value)
    return name


def check_per_group(name: str, value: Any, groups: Groups, **limits: Any) -> list[float]:
    """One checked number per group, from a number or a list/tuple with one per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(f"{name} has {len(value)} values; the optimizer has {len(groups)} param groups")
        return [check_real(f"{name}[{i}]", v, **limits) for i, v in enumerate(value)]
    return [check_real(name, value, **limits)] * len(groups)


def check_callables_per_group(name: str, value: Any, groups: Groups) -> list[Callable[[int], float]]:
    """One function per group, from a function or a list/tuple with one per group."""
    fns = list(value) if isinstance(value, (list, tuple)) else [value] * len(groups)
    if len(fns) != len(groups):
        raise ValueError(f"{name} has {len(fns)} functions; the optimizer has {len(groups)} param groups")
    for i, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"{name}{'' if len(fns) == 1 else f'[{i}]'} must be callable, got {type(fn).__name__}")
    return fns
