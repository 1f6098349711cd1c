"""The base of the rules whose step is not element-wise (Adafactor, Muon): state not shaped like
the parameter, or a matrix product between two passes. The plan's one-sweep step does not carry
them, so each parameter is stepped on its own, through the native passes of
``matrix_passes.hpp`` with NumPy's small vectors and BLAS between them.

What stays the same as :class:`~fastoptim.Optimizer`: params as arrays, a dict or group dicts;
``step(grads)`` with ``grad_scale``; ``max_grad_norm`` and ``skip_nonfinite``; ``param_groups``
that schedulers edit; ``state`` keyed by name; ``state_dict``/``load_state_dict`` with exact
resume; pickling; steps of one optimizer serialized across threads; bad input refused before
anything changes. What it refuses, since its state is not like its parameters or its update
not one sweep: ``state_dtype``, ``ema_decay``, ``cautious``, gradient accumulation, and
bfloat16 parameters.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ._core import check_grads, check_guards, measure_arrays
from ._param_groups import RESERVED, raw_groups, read_group
from ._step_options import StepInfo, check_grad_scale, check_max_grad_norm, clip_coefficient, read_step_options
from ._validation import check_bool, check_disjoint, check_param_array, is_bfloat16_param

__all__ = ["REFUSED_OPTIONS", "Guard", "PartialStepError", "PerArrayOptimizer", "check_c_order_param",
           "measure_and_clip"]

# fastoptim.torch's re-check of a tensor's memory (cpp/src/tensor_guards.hpp): (label, tensor,
# storage or None, address, span)
Guard = tuple[str, Any, Any, int, int]


class PartialStepError(ValueError):
    """A tensor's memory moved while a step ran (another thread, a finalizer): the parameters in
    `stepped` were updated, the one whose tensor moved and those after it were not (their state
    included). Not to be retried as a whole."""

    def __init__(self, message: str, stepped: list[Hashable]) -> None:
        super().__init__(message)
        self.stepped = stepped

# Options of the element-wise optimizers these rules do not take, with their defaults (which
# pass) and why.
REFUSED_OPTIONS = {
    "state_dtype": (None, "its state is kept in the parameter's dtype"),
    "state_rounding": ("nearest", "its state is kept in the parameter's dtype"),
    "min_8bit_size": (4096, "its state is kept in the parameter's dtype"),
    "seed": (0, "its state is kept in the parameter's dtype"),
    "stochastic_rounding": (True, "it takes no bfloat16 parameters"),
    "ema_decay": (None, "its step is not one sweep that could carry the average; keep an EMA with a "
                        "separate optimizer's ema_decay or with NumPy"),
    "ema_warmup": (False, "its step is not one sweep that could carry an average"),
    "cautious": (False, "it has no cautious variant"),
}


def check_c_order_param(label: str, param: Any, owner: str) -> None:
    """A float32 or float64 parameter in C order: what the rules stepped outside the plan read."""
    check_param_array(label, param)  # again at every step: a flag may have changed since
    if is_bfloat16_param(param):
        raise TypeError(f"{label} is bfloat16; {owner} steps float32 and float64 parameters")
    if not param.flags.c_contiguous:
        raise ValueError(f"{label} is not C-contiguous; {owner} reads a parameter in C order "
                         "(np.ascontiguousarray it once, before creating the optimizer)")


def measure_and_clip(grads: Sequence[np.ndarray | None], mult: float, max_norm: float | None,
                     skip_nonfinite: bool, guards: Sequence[Guard] = ()) -> tuple[StepInfo, float]:
    """What the step's options make of checked gradients read as ``g·mult``: the StepInfo (the
    global norm where an option needs it; skipped on a non-finite element with
    `skip_nonfinite`) and the factor each gradient is then read with (`mult`, clipped).
    `guards`: fastoptim.torch's, re-checked by the measure."""
    if max_norm is None and not skip_nonfinite:
        return StepInfo(None, False), mult
    squares, finite = measure_arrays([g for g in grads if g is not None], 0, mult, False, list(guards))
    grad_norm = math.sqrt(squares)
    if skip_nonfinite and not finite:
        return StepInfo(grad_norm, True), mult
    return StepInfo(grad_norm, False), mult * clip_coefficient(max_norm, grad_norm)


class PerArrayOptimizer:
    """Holds param groups and state and steps each parameter through ``_step_array``.

    Subclasses set ``_counts_steps`` and define ``_check_hyper`` (a group's hyper-parameters),
    ``_check_param`` (what a parameter must be), ``_new_state`` and ``_step_array``.
    """

    _counts_steps: ClassVar[bool] = False  # the state holds each parameter's "step", as torch's
    _refused: ClassVar[Mapping[str, tuple[Any, str]]] = REFUSED_OPTIONS  # the options it refuses: default, why
    # fastoptim.torch's guards of each parameter's view and its gradient's, by name: every native
    # pass over a parameter re-checks its own, after the Python code before it
    _guards_by_name: Mapping[Hashable, Sequence[Guard]] | None = None

    def __init__(self, params: Any, defaults: Mapping[str, Any], **options: Any) -> None:
        owner = type(self).__name__
        for key, (default, why) in self._refused.items():
            if key in options:
                value = options.pop(key)
                if value != default or type(value) is not type(default):
                    raise TypeError(f"{owner} does not take {key}={value!r}: {why}")
        read = read_step_options(owner, options)
        self._max_grad_norm, self._skip_nonfinite = read.max_grad_norm, read.skip_nonfinite
        self._check_hyper(dict(defaults))
        self.defaults = dict(defaults)
        self._lock = threading.RLock()
        self.param_groups: list[dict[str, Any]] = []
        self._registered: list[tuple[list[Hashable], list[np.ndarray]]] = []  # each group's names and arrays
        self.state: dict[Hashable, dict[str, Any]] = {}
        for raw in raw_groups(params):
            self.add_param_group(raw)

    # ---- what subclasses define -----------------------------------------------------------
    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _check_param(self, label: str, param: np.ndarray) -> None:
        """Beyond a float32/float64 C-order array: the rule's own demands (Muon: 2-D)."""

    def _new_state(self, param: np.ndarray, group: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _state_shapes(self, param: np.ndarray) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _step_array(self, group: Mapping[str, Any], param: np.ndarray, grad: np.ndarray, mult: float,
                    state: dict[str, Any], guards: list[Guard]) -> None:
        """One parameter's step; `guards` go to every native pass that reads `param` or `grad`."""
        raise NotImplementedError

    # ---- options ------------------------------------------------------------------------------
    @property
    def max_grad_norm(self) -> float | None:
        """Clip the gradients by their global 2-norm before the step (None: no clipping)."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self._max_grad_norm = check_max_grad_norm(value)

    @property
    def skip_nonfinite(self) -> bool:
        """A step whose gradients hold a NaN or an infinity changes nothing."""
        return self._skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        self._skip_nonfinite = check_bool("skip_nonfinite", value)

    # ---- groups -----------------------------------------------------------------------------
    def _names_and_params(self) -> Iterator[tuple[Mapping[str, Any], Hashable, np.ndarray]]:
        for group in self.param_groups:
            for name, param in zip(group["param_names"], group["params"]):
                yield group, name, param

    def _checked_param(self, name: Hashable, param: np.ndarray) -> np.ndarray:
        label = f"params[{name!r}]"
        check_c_order_param(label, param, type(self).__name__)
        self._check_param(label, param)
        return param

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group (a dict with ``params`` and any hyper-parameters that differ from the
        defaults); checked whole before anything is added."""
        with self._lock:
            names = [name for _, name, _ in self._names_and_params()]
            group = read_group(param_group, names)
            hyper = {**self.defaults, **group.hyper}
            self._check_hyper(hyper)
            for name, param in zip(group.names, group.arrays):
                self._checked_param(name, param)
            labels = [f"params[{n!r}]" for n in names + group.names]
            check_disjoint(labels, [p for _, _, p in self._names_and_params()] + group.arrays)
            self.param_groups.append({**hyper, "params": list(group.arrays), "param_names": list(group.names)})
            self._registered.append((list(group.names), list(group.arrays)))
            for name, param in zip(group.names, group.arrays):
                self.state[name] = self._new_state(param, hyper)

    # ---- checks before a step writes anything -----------------------------------------------
    def _checked_groups(self) -> list[tuple[dict[str, Any], list[Hashable], list[np.ndarray]]]:
        """Each group's hyper-parameters, names and arrays, checked as a scheduler or a user left them."""
        checked = []
        if len(self.param_groups) != len(self._registered):
            raise ValueError("param_groups was changed; groups are added with add_param_group, and never removed")
        for index, (group, (names, arrays)) in enumerate(zip(self.param_groups, self._registered)):
            if not isinstance(group, dict):
                raise ValueError(f"param_groups[{index}] was replaced; edit its hyper-parameters in place")
            for key, expected in (("params", arrays), ("param_names", names)):
                current = group.get(key)
                if not isinstance(current, list) or len(current) != len(expected) or not all(
                        a is b or (key == "param_names" and type(a) is type(b) and a == b)
                        for a, b in zip(current, expected)):
                    raise ValueError(f"param_groups[{index}][{key!r}] was changed; the arrays of a group are fixed "
                                     "(add parameters with add_param_group; nothing was updated)")
            hyper = {k: v for k, v in group.items() if k not in RESERVED}
            self._check_hyper(hyper)
            for name, param in zip(group["param_names"], group["params"]):
                if not isinstance(param, np.ndarray):
                    raise TypeError(f"params[{name!r}] must be a numpy.ndarray, got {type(param).__name__}")
                self._checked_param(name, param)
            checked.append((hyper, list(group["param_names"]), list(group["params"])))
        return checked

    def _check_state(self, state: Mapping[Hashable, Any], names: Sequence[Hashable], params: Sequence[np.ndarray],
                     where: str = "state", in_place: bool = True) -> list[np.ndarray]:
        """Every entry of `state` as a step needs it (`in_place`: as the step writes it, else as
        a load copies from it); returns the state arrays."""
        arrays = []
        if not isinstance(state, Mapping) or set(state) != set(names):
            raise ValueError(f"{where} must have one entry per parameter of this optimizer, keyed by its name")
        for name, param in zip(names, params):
            entry = state[name]
            if not isinstance(entry, dict):
                raise TypeError(f"{where}[{name!r}] must be a dict, got {type(entry).__name__}")
            shapes = self._state_shapes(param)
            expected = set(shapes) | ({"step"} if self._counts_steps else set())
            if set(entry) != expected:
                raise ValueError(f"{where}[{name!r}] holds {sorted(map(str, entry))}; {type(self).__name__} keeps "
                                 f"{sorted(expected)}")
            if "step" in entry:
                step = entry["step"]
                if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < 2**53:
                    raise ValueError(f"{where}[{name!r}]['step'] must be an integer in [0, 2**53), got {step!r}")
            for key, shape in shapes.items():
                array = entry[key]
                label = f"{where}[{name!r}][{key!r}]"
                if not isinstance(array, np.ndarray) or array.dtype != param.dtype:
                    raise TypeError(f"{label} must be a {param.dtype} array of shape {shape}, got "
                                    f"{type(array).__name__ if not isinstance(array, np.ndarray) else array.dtype}")
                if array.shape != shape:
                    raise ValueError(f"{label} must have shape {shape}, got {array.shape}")
                if in_place and not (array.flags.c_contiguous and array.flags.writeable and array.flags.aligned):
                    raise ValueError(f"{label} must be C-contiguous, aligned and writable")
                arrays.append(array)
        return arrays

    # ---- stepping ---------------------------------------------------------------------------
    def step(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None], *,
             grad_scale: float | None = None) -> StepInfo:
        """Update every parameter in place from `grads` (a dict keyed like the parameters, or a
        list in their order; None leaves a parameter and its state alone). Each gradient is read
        as ``g / grad_scale``, then clipped by ``max_grad_norm``. Everything is checked before
        anything is written: on an error nothing changes."""
        return self._step(grads, check_grad_scale(grad_scale), self._max_grad_norm, self._skip_nonfinite)

    def _checked_step(self, grads: Any) -> tuple[list[tuple[dict[str, Any], list[Hashable], list[np.ndarray]]],
                                                 dict[Hashable, np.ndarray | None]]:
        """The groups and the gradients by name, everything a step reads checked."""
        groups = self._checked_groups()
        names = [n for _, group_names, _ in groups for n in group_names]
        params = [p for _, _, group_params in groups for p in group_params]
        states = self._check_state(self.state, names, params)
        given = check_grads(grads, names, params, False)
        present = [g for g in given if g is not None]
        labels = ([f"params[{n!r}]" for n in names] + [f"state array {i}" for i in range(len(states))] +
                  [f"grads[{n!r}]" for n, g in zip(names, given) if g is not None])
        check_disjoint(labels, params + states + present)
        return groups, dict(zip(names, given))

    def _check_step(self, grads: Any) -> None:
        """Raise as a step with `grads` would, changing nothing."""
        with self._lock:
            self._checked_step(grads)

    def _step(self, grads: Any, mult: float, max_norm: float | None, skip_nonfinite: bool) -> StepInfo:
        """The step with each gradient read as ``g·mult``, clipped to `max_norm`."""
        with self._lock:
            groups, grads_of = self._checked_step(grads)
            guards = self._guards_by_name or {}
            every_guard = [guard for held in guards.values() for guard in held]
            if every_guard:
                check_guards(every_guard)  # a tensor moved before the step: refused with nothing written
            info, mult = measure_and_clip(list(grads_of.values()), mult, max_norm, skip_nonfinite, every_guard)
            if info.skipped:
                return info
            stepped: list[Hashable] = []
            with np.errstate(all="ignore"):  # NaN and inf follow torch's arithmetic, never np.seterr's
                for hyper, group_names, group_params in groups:
                    for name, param in zip(group_names, group_params):
                        grad = grads_of[name]
                        if grad is None:
                            continue
                        state = self.state[name]
                        if not every_guard:
                            self._step_array(hyper, param, grad, mult, state, [])
                        else:
                            self._guarded_step_array(hyper, param, grad, mult, state, list(guards.get(name, ())),
                                                     stepped)
                        stepped.append(name)
            return info

    def _guarded_step_array(self, hyper: Mapping[str, Any], param: np.ndarray, grad: np.ndarray, mult: float,
                            state: dict[str, Any], guards: list[Guard], stepped: list[Hashable]) -> None:
        """``_step_array`` over views of torch tensors, whole or not at all: its first passes write
        the state, and Python code between the passes (a finalizer, another thread) may move a
        tensor, which a later pass refuses; the state is then put back as it was (the parameter
        is written by the last pass only). A refusal after other parameters were stepped is a
        PartialStepError naming them."""
        kept = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in state.items()}
        try:
            self._step_array(hyper, param, grad, mult, state, guards)
        except ValueError as error:
            for key, value in kept.items():
                if isinstance(value, np.ndarray):
                    np.copyto(state[key], value)
                else:
                    state[key] = value
            if stepped:
                raise PartialStepError(f"a tensor's memory moved while the step ran (another thread or a finalizer "
                                       f"moved it): {len(stepped)} parameter(s) were updated before it, it and the "
                                       f"rest were not. The check said: {error}", stepped) from error
            raise

    def accumulate(self, grads: Any, *, grad_scale: float | None = None) -> None:
        raise TypeError(f"{type(self).__name__} does not accumulate gradients: sum the micro-batches' gradients "
                        "with NumPy and pass the sum to step()")

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state (copies) and the groups' hyper-parameters, keyed by parameter name."""
        with self._lock:
            groups = self._checked_groups()
            names = [n for _, group_names, _ in groups for n in group_names]
            self._check_state(self.state, names, [p for _, _, ps in groups for p in ps])
            state = {n: {k: (v.copy() if isinstance(v, np.ndarray) else int(v)) for k, v in self.state[n].items()}
                     for n in names}
            return {"state": state, "param_groups": [{**hyper, "params": list(group_names)}
                                                     for hyper, group_names, _ in groups]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`: checked whole first, then copied into the state arrays
        (on any error nothing changes). A resumed run continues bit-identically."""
        self._load_state_dict(state_dict, commit=True)

    def _load_state_dict(self, state_dict: Mapping[str, Any], commit: bool) -> None:
        """Check `state_dict` whole, then (`commit`) load it."""
        with self._lock:
            if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("state"), Mapping) or \
                    not isinstance(state_dict.get("param_groups"), Sequence):
                raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
            groups = self._checked_groups()
            saved_groups = state_dict["param_groups"]
            if len(saved_groups) != len(groups):
                raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer {len(groups)}")
            for index, (saved, (_, group_names, _)) in enumerate(zip(saved_groups, groups)):
                if not isinstance(saved, Mapping) or list(saved.get("params", ())) != group_names:
                    raise ValueError(f"state_dict['param_groups'][{index}] names other parameters than this group's")
                self._check_hyper({k: v for k, v in saved.items() if k not in RESERVED})
            names = [n for _, group_names, _ in groups for n in group_names]
            params = [p for _, _, ps in groups for p in ps]
            saved_state = state_dict["state"]
            self._check_state(self.state, names, params)
            self._check_state(saved_state, names, params, "state_dict['state']", in_place=False)
            if not commit:
                return
            for index, saved in enumerate(saved_groups):  # nothing below can fail
                self.param_groups[index].update({k: v for k, v in saved.items() if k not in RESERVED})
            for name in names:
                for key, value in saved_state[name].items():
                    if isinstance(value, np.ndarray):
                        np.copyto(self.state[name][key], value)
                    else:
                        self.state[name][key] = int(value)

    def memory(self) -> dict[str, int]:
        """The bytes of the state arrays (``state``); ``ema`` and ``accumulated`` are 0, as this
        optimizer keeps neither."""
        with self._lock:
            state = sum(v.nbytes for entry in self.state.values() for v in entry.values() if isinstance(v, np.ndarray))
            return {"state": int(state), "ema": 0, "accumulated": 0}

    def __getstate__(self) -> dict[str, Any]:
        saved = self.__dict__.copy()
        del saved["_lock"]
        return saved

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        self.__dict__.update(saved)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        groups = ", ".join(f"{len(g['params'])} arrays" for g in self.param_groups)
        return f"{type(self).__name__}({groups})"
