"""How an optimizer stores its state: in the parameter's dtype, or as bfloat16.

bfloat16 state (float32 parameters only) halves the state's bytes; the kernels load it into
float32 registers, update it there and round it back, to nearest even or stochastically from a
counter-based generator keyed by ``seed`` (``cpp/include/fastoptim/bfloat16.hpp``). NumPy has
no bfloat16: with ml_dtypes installed (``pip install "fastoptim[bf16]"``) the state arrays are
``ml_dtypes.bfloat16`` arrays; without it, ``uint16`` arrays of the same bit patterns. The
kernels accept either, and a state dict records the layout, so both load anywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ._validation import check_int

__all__ = ["NATIVE", "StateFormat", "bfloat16_dtype", "convert_saved", "from_bfloat16", "read_saved_format",
           "read_state_format", "to_bfloat16_bits"]

_DTYPES = (None, "bfloat16")
_ROUNDINGS = ("nearest", "stochastic")
_MAX_SEED = 2**64 - 1


class StateFormat(NamedTuple):
    """The state layout of an optimizer: `dtype` None (the parameter's) or ``"bfloat16"``;
    how bfloat16 rounds (``"nearest"`` even, or ``"stochastic"``); the generator's seed."""

    dtype: str | None = None
    rounding: str = "nearest"
    seed: int = 0

    @property
    def bfloat16(self) -> bool:
        return self.dtype == "bfloat16"

    def saved(self) -> dict[str, Any]:
        """As a state dict records it."""
        return {"state_dtype": self.dtype, "state_rounding": self.rounding, "seed": self.seed}


NATIVE = StateFormat()


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if value not in choices or (value is not None and not isinstance(value, str)):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def _check_seed(value: Any, name: str = "seed") -> int:
    return check_int(name, value, low=0, high=_MAX_SEED)


def read_state_format(options: dict[str, Any]) -> StateFormat:
    """Take ``state_dtype``, ``state_rounding`` and ``seed`` out of an optimizer's keyword
    options, checked."""
    dtype = options.pop("state_dtype", None)
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and dtype is not str):
        try:
            dtype = np.dtype(dtype).name  # np.dtype(ml_dtypes.bfloat16), or ml_dtypes.bfloat16 itself
        except TypeError:
            raise TypeError(f"state_dtype must be None or 'bfloat16', got {dtype!r}") from None
    dtype = _check_choice("state_dtype", dtype, _DTYPES)
    rounding = _check_choice("state_rounding", options.pop("state_rounding", "nearest"), _ROUNDINGS)
    seed = _check_seed(options.pop("seed", 0))
    return StateFormat(dtype, rounding, seed)


def read_saved_format(state_dict: Mapping[str, Any]) -> StateFormat:
    """The layout a state dict records (one without any, as saved before bfloat16 state
    existed, holds arrays of the parameters' dtype)."""
    saved = state_dict.get("state_format")
    if saved is None:
        return NATIVE
    if not isinstance(saved, Mapping):
        raise TypeError(f"state_dict['state_format'] must be a dict, got {type(saved).__name__}")
    where = "state_dict['state_format']"
    dtype = _check_choice(f"{where}['state_dtype']", saved.get("state_dtype"), _DTYPES)
    rounding = _check_choice(f"{where}['state_rounding']", saved.get("state_rounding", "nearest"), _ROUNDINGS)
    return StateFormat(dtype, rounding, _check_seed(saved.get("seed", 0), f"{where}['seed']"))


@functools.cache
def bfloat16_dtype() -> np.dtype:
    """ml_dtypes' bfloat16 where it is installed, else uint16 (its bit patterns)."""
    try:
        import ml_dtypes
    except ImportError:
        return np.dtype(np.uint16)
    bfloat16: np.dtype = np.dtype(ml_dtypes.bfloat16)
    return bfloat16


def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as uint16 bit patterns:
    the kernels' rounding. A NaN becomes the quiet NaN of its sign."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(u.view(np.float32))
    rounded[nan] = ((u[nan] >> np.uint32(16)) & np.uint32(0x8000) | np.uint32(0x7FC0)).astype(np.uint16)
    shaped: np.ndarray = rounded.reshape(np.shape(values))
    return shaped


def from_bfloat16(array: np.ndarray) -> np.ndarray:
    """bfloat16 values (either layout) as float32, exactly."""
    bits = np.ascontiguousarray(array).view(np.uint16)
    widened: np.ndarray = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(array.shape)
    return widened


def convert_saved(array: np.ndarray, saved_bfloat16: bool, bfloat16: bool) -> np.ndarray:
    """A saved state array (checked) in the layout of an optimizer: its float values, or with
    `bfloat16` its bfloat16 bit patterns as uint16 (rounded to nearest even from float32)."""
    if saved_bfloat16:
        return np.ascontiguousarray(array).view(np.uint16) if bfloat16 else from_bfloat16(array)
    return to_bfloat16_bits(array) if bfloat16 else array
