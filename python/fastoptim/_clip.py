"""torch's gradient-norm helpers for users who keep their own loop: ``get_total_norm`` and
``clip_grad_norm_``, with torch's names and semantics, over NumPy arrays, native and threaded.

A 2-norm, 1-norm or max-norm is one read-only pass in fixed blocks added in a fixed order (the
same bits on every instruction set and thread count), accumulated in each array's dtype within
a block of 4096 elements and in float64 across blocks. Other orders p > 0 are computed with
NumPy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._core import measure_arrays, scale_arrays
from ._step_options import is_plus_infinity
from ._validation import check_bool, check_real

__all__ = ["clip_grad_norm_", "get_total_norm"]

_NATIVE = {2.0: 0, 1.0: 1, math.inf: 2}  # norm_type -> the native pass's kind


def _arrays(grads: Any) -> list[Any]:
    """A single array, a dict's values or any iterable of arrays, as a list (torch takes a
    tensor or an iterable of tensors)."""
    if isinstance(grads, np.ndarray):
        return [grads]
    if isinstance(grads, Mapping):
        return list(grads.values())
    if isinstance(grads, Iterable) and not isinstance(grads, (str, bytes)):
        return list(grads)
    raise TypeError(f"grads must be an array, a dict of arrays or an iterable of arrays, got {type(grads).__name__}")


def _norm_type(value: Any) -> float:
    if (isinstance(value, str) and value.lower() == "inf") or is_plus_infinity(value):
        return math.inf
    return check_real("norm_type", value, low=0.0, low_open=True)


def _total_norm(arrays: list[Any], norm_type: float, writable: bool) -> float:
    """The norm; every array is checked first (`writable`: also writable and sharing no memory,
    as clip_grad_norm_ may scale them), whether or not it will be."""
    kind = _NATIVE.get(norm_type)
    if kind is not None:
        value, finite = measure_arrays(arrays, kind, 1.0, writable)
        if kind == 0:
            return math.sqrt(value)
        if kind == 2 and not finite:  # a maximum skips NaNs; torch's norm is NaN if any element is
            return math.nan if any(np.isnan(a).any() for a in arrays) else math.inf
        return value
    measure_arrays(arrays, 0, 1.0, writable)  # the same checks as the native orders
    total = 0.0
    for a in arrays:
        total += float(np.sum(np.abs(a, dtype=np.float64) ** norm_type))
    return float(total ** (1.0 / norm_type))


def get_total_norm(grads: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> float:
    r"""The norm of all of `grads` together, as ``torch.nn.utils.get_total_norm``:

    .. math:: \|g\|_p = \Bigl(\sum_i \sum_j |g_{ij}|^p\Bigr)^{1/p}, \qquad \|g\|_\infty = \max_{ij} |g_{ij}|

    Args:
        grads: a float32 or float64 array, a dict of them or an iterable of them (contiguous).
        norm_type: p > 0, or ``math.inf`` / ``"inf"`` (default 2.0).
        error_if_nonfinite: raise RuntimeError if the norm is NaN or infinite (default False).
        foreach: accepted and ignored, as the pass is native (default None).

    Returns the norm as a Python float (0.0 for no arrays).
    """
    return _checked_norm(_arrays(grads), norm_type, error_if_nonfinite, foreach, writable=False)


def _checked_norm(arrays: list[Any], norm_type: Any, error_if_nonfinite: Any, foreach: Any, *,
                  writable: bool) -> float:
    p = _norm_type(norm_type)
    check_bool("error_if_nonfinite", error_if_nonfinite)
    if foreach is not None:
        check_bool("foreach", foreach)
    total = _total_norm(arrays, p, writable)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite, so it cannot be "
                           "clipped. To disable this error and scale the gradients by the non-finite norm "
                           "anyway, set error_if_nonfinite=False")
    return total


def clip_grad_norm_(grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> float:
    r"""Scale `grads` in place so that their total norm is at most `max_norm`, as
    ``torch.nn.utils.clip_grad_norm_``:

    .. math:: g \leftarrow g \cdot \min\Bigl(1, \frac{\text{max\_norm}}{\|g\|_p + 10^{-6}}\Bigr)

    (a NaN norm scales by NaN, as torch's does). An optimizer's ``max_grad_norm`` does the same
    without writing into the gradients, for the cost of one read.

    Args:
        grads: a float32 or float64 array, a dict of them or an iterable of them: contiguous,
            writable, sharing no memory (torch scales a tensor given twice twice; here it is
            refused), checked whether or not they need scaling.
        max_norm: the largest norm, >= 0.
        norm_type: p > 0, or ``math.inf`` / ``"inf"`` (default 2.0).
        error_if_nonfinite: raise RuntimeError, scaling nothing, if the norm is NaN or infinite
            (default False).
        foreach: accepted and ignored (default None).

    Returns the total norm before clipping, as a Python float.
    """
    limit = math.inf if is_plus_infinity(max_norm) else check_real("max_norm", max_norm, low=0.0)
    arrays = _arrays(grads)
    total = _checked_norm(arrays, norm_type, error_if_nonfinite, foreach, writable=True)
    coefficient = limit / (total + 1e-6)
    if coefficient < 1.0 or math.isnan(coefficient):
        scale_arrays(arrays, coefficient)
    return total
