"""The arrays an optimizer keeps besides its rule's state: the buffers gradients accumulate in
between steps, and the exponential moving average (EMA) of the weights. The native plan reads
and writes both inside the step's sweep; this module allocates them, saves them in a state
dict and checks a saved one, and swaps the EMA into the parameters."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._memory import state_like
from ._validation import check_dtype_and_shape, check_int, compute_dtype, is_bfloat16_param

__all__ = ["Extras", "NO_EXTRAS", "check_saved_extras", "save_extras", "swap_in_place", "with_arrays"]


class Extras(NamedTuple):
    """What a plan is built with besides the state: ``ema`` (name -> EMA array, or None when the
    optimizer keeps no EMA) and its update count; ``accumulated`` (name -> buffer, or None
    before the first ``accumulate``), the micro-batches summed in them since the last step, and
    the names whose buffers hold any."""

    ema: dict[Hashable, np.ndarray] | None
    ema_updates: int
    accumulated: dict[Hashable, np.ndarray] | None
    pending: int
    touched: frozenset[Hashable]


NO_EXTRAS = Extras(None, 0, None, 0, frozenset())


def with_arrays(extras: Extras, names: Sequence[Hashable], params: Sequence[np.ndarray], ema_on: bool) -> Extras:
    """`extras` with an array for every parameter: a new parameter's EMA starts as a copy of
    it, its buffer as zeros (once buffers exist); arrays of parameters no longer held are dropped."""
    ema = None
    if ema_on:
        ema = {}
        for name, param in zip(names, params):
            array = (extras.ema or {}).get(name)
            if array is None:
                array = state_like(param, compute_dtype(param))
                np.copyto(array, param)
            ema[name] = array
    accumulated = None
    if extras.accumulated is not None:
        accumulated = {}
        for name, param in zip(names, params):
            buffer = extras.accumulated.get(name)
            accumulated[name] = state_like(param, compute_dtype(param)) if buffer is None else buffer
    return extras._replace(ema=ema, accumulated=accumulated, touched=extras.touched & set(names))


def save_extras(extras: Extras, names: Sequence[Hashable]) -> dict[str, Any]:
    """The state dict's ``"ema"`` and ``"accumulated"`` entries (copies), where there is anything."""
    saved: dict[str, Any] = {}
    if extras.ema is not None:
        saved["ema"] = {"updates": extras.ema_updates,
                        "arrays": {name: extras.ema[name].copy(order="K") for name in names}}
    if extras.pending and extras.accumulated is not None:
        saved["accumulated"] = {"micro_batches": extras.pending,
                                "arrays": {name: extras.accumulated[name].copy(order="K")
                                           for name in names if name in extras.touched}}
    return saved


def check_saved_extras(state_dict: Mapping[str, Any], names: Sequence[Hashable], params: Sequence[np.ndarray],
                       ema_on: bool) -> Extras:
    """New arrays holding a state dict's EMA and pending accumulation, every part checked. A
    state dict without ``"ema"`` (one saved before EMAs existed, or without one) starts the EMA
    from the parameters as they are; one without ``"accumulated"`` has nothing pending."""
    ema: dict[Hashable, np.ndarray] | None = None
    updates = 0
    saved = state_dict.get("ema")
    if saved is not None:
        if not ema_on:
            raise ValueError("state_dict has an EMA of the weights ('ema'); this optimizer keeps none "
                             "(construct it with ema_decay to load it)")
        arrays = _checked_arrays("state_dict['ema']", saved, "updates", names, params)
        updates = check_int("state_dict['ema']['updates']", saved["updates"], low=0)
        if set(arrays) != set(names):
            raise ValueError("state_dict['ema']['arrays'] must hold one array per parameter")
        ema = arrays
    accumulated = None
    pending = 0
    touched: frozenset[Hashable] = frozenset()
    saved = state_dict.get("accumulated")
    if saved is not None:
        arrays = _checked_arrays("state_dict['accumulated']", saved, "micro_batches", names, params)
        pending = check_int("state_dict['accumulated']['micro_batches']", saved["micro_batches"], low=1)
        touched = frozenset(arrays)
        accumulated = {name: arrays.get(name, state_like(param, compute_dtype(param)))
                       for name, param in zip(names, params)}
    return Extras(ema, updates, accumulated, pending, touched)


def _checked_arrays(label: str, saved: Any, count: str, names: Sequence[Hashable],
                    params: Sequence[np.ndarray]) -> dict[Hashable, np.ndarray]:
    if not isinstance(saved, Mapping) or not {count, "arrays"} <= saved.keys():
        raise TypeError(f"{label} must be a dict with {count!r} and 'arrays', as state_dict() makes it")
    arrays = saved["arrays"]
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{label}['arrays'] must be a dict keyed like the parameters, got {type(arrays).__name__}")
    by_name = dict(zip(names, params))
    copies: dict[Hashable, np.ndarray] = {}
    for name, value in arrays.items():
        if name not in by_name:
            raise ValueError(f"{label}['arrays'] has an entry for {name!r}, which is not a parameter of this optimizer")
        param = by_name[name]
        checked = check_dtype_and_shape(f"{label}['arrays'][{name!r}]", value, param,
                                        "float32" if is_bfloat16_param(param) else "")
        copies[name] = state_like(param, compute_dtype(param))
        np.copyto(copies[name], checked, casting="no")
    return copies


def swap_in_place(params: Sequence[np.ndarray], emas: Sequence[np.ndarray]) -> None:
    """Exchange the values of each parameter and its EMA, one array's copy at a time."""
    for param, ema in zip(params, emas):
        held = param.copy(order="K")
        np.copyto(param, ema)
        np.copyto(ema, held)
