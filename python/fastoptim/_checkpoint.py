"""What a state dict must be to load: every part checked against the optimizer, nothing changed.

A state dict is ``{"state": {name: {"step": n, <running scalars>, <slot>: array}},
"param_groups": [{<hyper-parameters>, "params": [names]}], "state_format": {...}}``, as
``state_dict()`` makes it; its state arrays come back in the loading optimizer's layout.
Anything else raises TypeError or ValueError naming the part at fault.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np

from ._core import MAX_STEPS, rules
from ._state_format import ABSMAX, StateFormat, memory_order, read_saved_format, stored_as, stored_values
from ._validation import check_absmax, check_dtype_and_shape, is_bfloat16_param

__all__ = ["MAX_STEPS", "Checked", "Clock", "check_state_dict", "read_hyper"]

_RESERVED = ("params", "param_names")

Clock = tuple[int, bool, list[float]]  # steps done, fresh (state holds nothing yet), running scalars
# Each group's hyper-parameters, each parameter's saved arrays, each group's clock.
Checked = tuple[list[dict[str, Any]], dict[Hashable, dict[str, np.ndarray]], list[Clock]]


def _frozen(value: Any) -> Any:
    """A sequence hyper-parameter (betas) read once into a tuple, so that what is validated is
    what the plan gets, whatever another thread does to the list meanwhile."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(value)
    return value


class _Held(Protocol):
    @property
    def groups(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def params(self) -> Sequence[Sequence[np.ndarray]]: ...
    @property
    def names(self) -> Sequence[Sequence[Hashable]]: ...


class Optimizer(Protocol):
    """What a state dict is checked against: an optimizer's groups, arrays and rule."""

    @property
    def _held(self) -> _Held: ...
    _rule: str
    _slots: ClassVar[tuple[str, ...]]
    _seeded_slots: ClassVar[tuple[str, ...]]
    _signed_slots: ClassVar[frozenset[str]]
    _state_format: StateFormat
    _storage_sizes: dict[Hashable, int]
    _state_holds_weights: ClassVar[bool]

    def _check_group(self, group: Mapping[str, Any]) -> None: ...
    def _needed_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]: ...
    @classmethod
    def _scalar_names(cls) -> tuple[str, ...]: ...
    @classmethod
    def _scalar_init(cls) -> list[float]: ...


def read_hyper(group: Mapping[str, Any]) -> dict[str, Any]:
    """One read of a group's hyper-parameters: validated, then turned into the plan's row."""
    return {k: _frozen(v) for k, v in dict(group).items() if k not in _RESERVED}


class _Entry(NamedTuple):
    """One parameter's saved state, checked."""

    steps: int
    scalars: list[float]
    arrays: dict[str, np.ndarray]
    unwritten: bool  # a seeded slot its settings need is left out: its group loads fresh


def check_state_dict(opt: Optimizer, state_dict: Any) -> Checked:
    """Validate every part of `state_dict` against `opt`'s groups, parameters and rule."""
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= state_dict.keys():
        raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_state, Mapping):
        raise TypeError(f"state_dict['state'] must be a dict, got {type(saved_state).__name__}")
    if not isinstance(saved_groups, (list, tuple)):
        raise TypeError(f"state_dict['param_groups'] must be a list of dicts, got {type(saved_groups).__name__}")
    saved_format = read_saved_format(state_dict)
    held = opt._held
    if len(saved_groups) != len(held.groups):
        raise ValueError(f"state_dict has {len(saved_groups)} param groups; the optimizer has {len(held.groups)}")
    merged: list[dict[str, Any]] = []
    loaded: dict[Hashable, dict[str, np.ndarray]] = {}
    clocks: list[Clock] = []
    for index, (group, names, params, saved) in enumerate(zip(held.groups, held.names, held.params, saved_groups)):
        where = f"state_dict['param_groups'][{index}]"
        if not isinstance(saved, Mapping):
            raise TypeError(f"{where} must be a dict, got {type(saved).__name__}")
        saved_names = saved.get("params")
        if not isinstance(saved_names, (list, tuple)):
            raise TypeError(f"{where}['params'] must be a list of parameter names, got {type(saved_names).__name__}")
        if list(saved_names) != list(names):
            raise ValueError(f"{where} holds parameters {list(saved_names)!r}; the optimizer's group holds "
                             f"{list(names)!r}")
        hyper = {**read_hyper(group), **read_hyper({k: v for k, v in saved.items() if isinstance(k, str)})}
        opt._check_group(hyper)
        needed = opt._needed_slots(hyper)
        entries = [_check_entry(opt, name, saved_state.get(name, {"step": 0}), param, needed, saved_format)
                   for name, param in zip(names, params)]
        if rules()[opt._rule]["clock"] == "per_group":  # else each parameter keeps its own, as in torch
            first = entries[0]
            for field, what in (("steps", "steps"), ("scalars", ", ".join(opt._scalar_names())),
                                ("unwritten", f"whether {', '.join(map(repr, opt._seeded_slots))} are saved")):
                if any(getattr(e, field) != getattr(first, field) for e in entries):
                    raise ValueError(f"the parameters of param_groups[{index}] differ in {what} in state_dict")
        loaded.update((name, entry.arrays) for name, entry in zip(names, entries))
        merged.append(hyper)
        clocks.extend((e.steps, e.steps == 0 or e.unwritten, e.scalars) for e in entries)
    ours = {n for names in held.names for n in names}
    for name in saved_state:
        if name not in ours:
            raise ValueError(f"state_dict['state'] has an entry for {name!r}, which is not a parameter of this "
                             "optimizer")
    return merged, loaded, clocks


def _converted(stored: dict[str, np.ndarray], slot: str, saved: str, storage: str, signed: bool,
               param: np.ndarray) -> dict[str, np.ndarray]:
    """One saved slot (checked) in the layout `storage`: as saved where the layouts agree (bfloat16
    as uint16 bit patterns; 8-bit codes whose blocks run along the parameter's memory order),
    else through its float values (bfloat16 widens exactly, 8-bit codes decode exactly; they
    round to the nearest bfloat16 or 8-bit code)."""
    if saved == storage and (saved != "int8" or memory_order(stored[slot]) == memory_order(param)):
        return {k: (np.ascontiguousarray(a).view(np.uint16) if saved == "bfloat16" else a) for k, a in stored.items()}
    values = stored_values(stored, slot, saved, signed, param)
    return stored_as(values, slot, storage, signed, param)


def _saved_layout(value: Any, param: np.ndarray, saved: str) -> str:
    """The layout of one saved slot: the one its format gives `param`, except where the saved
    parameter had the other width: the state of float32 parameters (float32) loaded beside
    bfloat16 ones, and the state of bfloat16 parameters (bfloat16 by default) beside float32
    ones. The array's dtype tells them apart; anything else is checked as the format says."""
    if not isinstance(value, np.ndarray):
        return saved
    if saved == "bfloat16" and is_bfloat16_param(param) and value.dtype == np.float32:
        return "float32"
    if saved == "" and param.dtype == np.float32 and is_bfloat16_param(value):
        return "bfloat16"
    return saved


def _check_entry(opt: Optimizer, name: Hashable, entry: Any, param: np.ndarray, needed: Sequence[str],
                 saved_format: StateFormat) -> _Entry:
    label = f"state_dict['state'][{name!r}]"
    if not isinstance(entry, Mapping):
        raise TypeError(f"{label} must be a dict, got {type(entry).__name__}")
    if "step" not in entry:
        raise ValueError(f"{label} lacks 'step'")
    step = entry["step"]
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{label}['step'] must be an integer, got {type(step).__name__}")
    if not 0 <= int(step) <= MAX_STEPS:
        raise ValueError(f"{label}['step'] must be in [0, 2**53] (steps are counted exactly), got {step}")
    steps = int(step)

    scalar_names = opt._scalar_names()
    info = rules()[opt._rule]
    raw: list[Any] = [entry.get(n) for n in scalar_names]
    if any(v is None for v in raw):
        if steps > 0:
            missing = scalar_names[[v is None for v in raw].index(True)]
            raise ValueError(f"{label} lacks {missing!r}, which step {steps} needs")
        raw = opt._scalar_init()
    for n, v, low, high in zip(scalar_names, raw, info["scalar_low"], info["scalar_high"]):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{label}[{n!r}] must be a number, got {type(v).__name__}")
        if not low <= float(v) <= high:  # NaN fails too
            raise ValueError(f"{label}[{n!r}] must be a finite number in [{low}, {high}], got {v!r}")

    whole = opt._storage_sizes.get(name)  # a piece's whole array decides its layout
    weights = opt._state_holds_weights
    saved = saved_format.storage(param, whole, weights)
    storage = opt._state_format.storage(param, whole, weights)
    arrays: dict[str, np.ndarray] = {}
    for slot, value in entry.items():
        if slot == "step" or slot in scalar_names or (saved == "int8" and slot in [s + ABSMAX for s in opt._slots]):
            continue
        if slot not in opt._slots:
            raise ValueError(f"{label}: {type(opt).__name__} has no state named {slot!r}")
        layout = _saved_layout(value, param, saved)
        if layout and param.dtype == np.float64:
            raise ValueError(f"{label}[{slot!r}] is saved as {layout} state, which only float32 and bfloat16 "
                             f"parameters have; this parameter is {param.dtype}")
        stored = {slot: check_dtype_and_shape(f"{label}[{slot!r}]", value, param, layout)}
        if saved == "int8":
            key = slot + ABSMAX
            if key not in entry:
                raise ValueError(f"{label} has {slot!r} saved as 8-bit codes without {key!r}")
            stored[key] = check_absmax(f"{label}[{key!r}]", entry[key], param, writable=False)
        try:
            arrays.update(_converted(stored, slot, layout, storage, slot in opt._signed_slots, param))
        except ValueError as problem:  # a negative value for an unsigned code
            raise ValueError(f"{label}[{slot!r}]: {problem}") from None
    missing_slots = [s for s in needed if s not in arrays and s not in opt._seeded_slots]
    if steps > 0 and missing_slots:
        raise ValueError(f"{label} lacks {missing_slots[0]!r}, which step {steps} needs")
    unwritten = any(s in needed and s not in arrays for s in opt._seeded_slots)
    return _Entry(steps, [float(v) for v in raw], arrays, unwritten)
