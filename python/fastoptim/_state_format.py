"""How an optimizer stores its state: in the parameter's dtype, as bfloat16, or as 8-bit codes.

bfloat16 state (float32 parameters only) halves the state's bytes; the kernels load it into
float32 registers, update it there and round it back, to nearest even or stochastically from a
counter-based generator keyed by ``seed`` (``cpp/include/fastoptim/bfloat16.hpp``). NumPy has
no bfloat16: with ml_dtypes installed (``pip install "fastoptim[bf16]"``) the state arrays are
``ml_dtypes.bfloat16`` arrays; without it, ``uint16`` arrays of the same bit patterns. The
kernels accept either, and a state dict records the layout, so both load anywhere.

bfloat16 parameters (``ml_dtypes.bfloat16`` arrays) keep bfloat16 state by default, as torch
does (state of the parameter's dtype); ``state_dtype="float32"`` keeps theirs in float32. Their
updates round to bfloat16 stochastically by default (``stochastic_rounding``), from the same
generator.

8-bit state (float32 and bfloat16 parameters of at least ``min_8bit_size`` elements) keeps each slot as
uint8 codes shaped like the parameter, under the slot's name, and a float32 absmax per block
of 256 elements under the slot's name + ``"_absmax"`` (``cpp/include/fastoptim/int8_state.hpp``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

from ._core import CODE_BLOCK
from ._core import dequantize_blockwise as _decode_blocks
from ._core import quantize_blockwise as _encode_blocks
from ._memory import state_like
from ._validation import check_absmax, check_bool, check_int, check_state_array, is_bfloat16_param

__all__ = ["ABSMAX", "NATIVE", "StateFormat", "bfloat16_dtype", "dequantize_blockwise", "from_bfloat16",
           "new_slot", "quantize_blockwise", "read_saved_format", "read_state_format", "check_stored", "stored_as",
           "memory_order", "stored_keys", "stored_values", "to_bfloat16_bits", "zeros_text"]

_DTYPES = (None, "bfloat16", "int8", "float32")
ABSMAX = "_absmax"  # the suffix of an 8-bit slot's absmax array
MIN_8BIT_SIZE = 4096  # bitsandbytes' default: smaller arrays keep full-precision state
_ROUNDINGS = ("nearest", "stochastic")
_MAX_SEED = 2**64 - 1


class StateFormat(NamedTuple):
    """The state layout of an optimizer: `dtype` None (the parameter's), ``"bfloat16"``,
    ``"int8"`` or ``"float32"`` (bfloat16 parameters' state in float32; the others' in their
    own); how bfloat16 state rounds (``"nearest"`` even, or ``"stochastic"``); the generator's
    seed; the fewest elements an array needs for 8-bit state; whether bfloat16 parameters
    round stochastically."""

    dtype: str | None = None
    rounding: str = "nearest"
    seed: int = 0
    min_8bit_size: int = MIN_8BIT_SIZE
    stochastic_rounding: bool = True

    @property
    def bfloat16(self) -> bool:
        return self.dtype == "bfloat16"

    def storage(self, param: np.ndarray, size: int | None = None, holds_weights: bool = False) -> str:
        """How `param`'s state is stored: ``""`` (in its dtype, float32 or float64),
        ``"bfloat16"``, ``"int8"`` (for arrays of `size` elements, default its own, from
        ``min_8bit_size``) or ``"float32"`` (a bfloat16 parameter's, in float32). State that
        `holds_weights` (Schedule-Free's z, ASGD's average) is float32 for a bfloat16 parameter
        unless state_dtype says otherwise: rounded to nearest bfloat16, its small steps would
        be lost (as Lookahead's slow weights)."""
        own = "bfloat16" if is_bfloat16_param(param) else ""
        if holds_weights and own and self.dtype is None:
            return "float32"
        if self.dtype == "int8":
            return "int8" if (param.size if size is None else size) >= self.min_8bit_size else own
        if self.dtype == "float32":
            return "float32" if own else ""
        return self.dtype or own

    def saved(self) -> dict[str, Any]:
        """As a state dict records it."""
        saved: dict[str, Any] = {"state_dtype": self.dtype, "state_rounding": self.rounding, "seed": self.seed}
        if not self.stochastic_rounding:  # bfloat16 parameters' rounding, where not the default
            saved["stochastic_rounding"] = False
        return {**saved, "min_8bit_size": self.min_8bit_size} if self.dtype == "int8" else saved


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
            raise TypeError(f"state_dtype must be None, 'bfloat16', 'int8' or 'float32', got {dtype!r}") from None
    dtype = _check_choice("state_dtype", dtype, _DTYPES)
    rounding = _check_choice("state_rounding", options.pop("state_rounding", "nearest"), _ROUNDINGS)
    if dtype == "int8" and rounding != "nearest":
        raise ValueError("state_rounding applies to bfloat16 state; 8-bit state rounds to the nearest code")
    seed = _check_seed(options.pop("seed", 0))
    min_8bit_size = check_int("min_8bit_size", options.pop("min_8bit_size", MIN_8BIT_SIZE), low=1)
    stochastic = check_bool("stochastic_rounding", options.pop("stochastic_rounding", True))
    return StateFormat(dtype, rounding, seed, min_8bit_size, stochastic)



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
    min_8bit_size = check_int(f"{where}['min_8bit_size']", saved.get("min_8bit_size", MIN_8BIT_SIZE), low=1)
    stochastic = check_bool(f"{where}['stochastic_rounding']", saved.get("stochastic_rounding", True))
    return StateFormat(dtype, rounding, _check_seed(saved.get("seed", 0), f"{where}['seed']"), min_8bit_size,
                       stochastic)


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


def quantize_blockwise(values: Any, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """8-bit state's format: the codes (uint8, shaped as `values`) of float32 values taken in C
    order, and the float32 absmax of each block of 256. `signed` codes (first moments) keep a
    sign bit; unsigned ones (values never below zero: second moments) spend it on range, and
    refuse negative values. Each code is the nearest of its block's scaled 8-bit floats (float16
    numbers cut to 3 mantissa bits), ties to the even code (``cpp/include/fastoptim/int8_state.hpp``)."""
    values = np.asarray(values, dtype=np.float32)
    if not signed and (values < 0).any():
        raise ValueError("quantize_blockwise: unsigned codes hold values that are never negative (a second "
                         "moment); these values hold negative ones")
    codes, absmax = _encode_blocks(values, not signed)
    return codes, absmax


def dequantize_blockwise(codes: Any, absmax: Any, signed: bool = True) -> np.ndarray:
    """The float32 values of 8-bit `codes` (uint8, taken in C order) and their blocks' `absmax`,
    exactly as the kernels read them."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"dequantize_blockwise: codes must be uint8, got {codes.dtype}")
    values: np.ndarray = _decode_blocks(np.ascontiguousarray(codes), np.asarray(absmax, dtype=np.float32), not signed)
    return values


def memory_order(array: np.ndarray) -> Literal["C", "F"]:
    """The order in which 8-bit state's blocks run along `array` (a parameter or its codes)."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def stored_values(arrays: Mapping[str, np.ndarray], slot: str, storage: str, signed: bool,
                  param: np.ndarray) -> np.ndarray:
    """The float values of `slot`, one of `arrays` stored as `storage` (8-bit codes decoded
    along their own memory order: the order of the parameter they were saved beside)."""
    array = arrays[slot]
    if storage == "bfloat16":
        return from_bfloat16(array)
    if storage != "int8":
        return array  # "float32" or the parameter's own dtype
    order = memory_order(array)
    flat = dequantize_blockwise(array.ravel(order=order), arrays[slot + ABSMAX], signed)
    return flat.reshape(param.shape, order=order)


def stored_as(values: np.ndarray, slot: str, storage: str, signed: bool, param: np.ndarray) -> dict[str, np.ndarray]:
    """Float `values` of `slot` stored as `storage`: ``{slot: array}`` and, for 8-bit state,
    its absmax (bfloat16 as uint16 bit patterns rounded to nearest even, codes to the nearest)."""
    if storage == "bfloat16":
        return {slot: to_bfloat16_bits(values)}
    if storage == "float32":
        return {slot: np.asarray(values, np.float32)}
    if storage != "int8":
        return {slot: values}
    order = memory_order(param)
    codes, absmax = quantize_blockwise(np.asarray(values).ravel(order=order), signed)
    return {slot: codes.reshape(param.shape, order=order), slot + ABSMAX: absmax}


def stored_keys(slot: str, storage: str) -> tuple[str, ...]:
    """The state entries of one slot: the slot itself, and its absmax for 8-bit state."""
    return (slot, slot + ABSMAX) if storage == "int8" else (slot,)


def new_slot(param: np.ndarray, slot: str, storage: str) -> dict[str, np.ndarray]:
    """Zeros for one state slot of `param` stored as `storage`, keyed by :func:`stored_keys`."""
    if storage == "int8":
        blocks = -(-param.size // CODE_BLOCK)
        return {slot: state_like(param, np.dtype(np.uint8)), slot + ABSMAX: np.zeros(blocks, np.float32)}
    if storage == "float32":
        return {slot: state_like(param, np.dtype(np.float32))}
    bfloat16 = storage == "bfloat16" and param.dtype != np.float64  # float64 ones are refused by the plan
    return {slot: state_like(param, bfloat16_dtype() if bfloat16 else None)}


def zeros_text(key: str, storage: str) -> str:
    """How a user writes zeros for one of a slot's entries (`key`, a slot or its absmax)."""
    if storage == "int8":
        absmax = key.endswith(ABSMAX)
        return "np.zeros(-(-param.size // 256), np.float32)" if absmax else "np.zeros_like(param, np.uint8)"
    if storage == "float32":
        return "np.zeros_like(param, np.float32)"
    return "np.zeros_like(param, fastoptim.bfloat16_dtype())" if storage == "bfloat16" else "np.zeros_like(param)"


def check_stored(label: str, key: str, array: Any, param: np.ndarray, storage: str) -> None:
    """A state array a user put in place of one of a slot's entries (`key`, a slot or its absmax)."""
    if storage == "int8" and key.endswith(ABSMAX):
        check_absmax(label, array, param)
    else:
        check_state_array(label, array, param, storage)
