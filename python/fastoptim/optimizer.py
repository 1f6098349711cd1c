"""The optimizer base class every update rule reuses: param groups, state, state dicts, step."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from . import _core
from ._memory import state_like
from ._validation import check_disjoint, check_param_array

__all__ = ["Optimizer", "ParamGroup"]

_RESERVED = ("params", "param_names")


class ParamGroup(dict):  # type: ignore[type-arg]
    """One parameter group: torch's dict of hyper-parameters plus ``params`` and ``param_names``.

    Edit it freely between steps (``group["lr"] = 0.01``): any change is validated and takes
    effect at the next step. The arrays in ``params`` are fixed; add more with
    :meth:`Optimizer.add_param_group`.
    """

    __slots__ = ("_changed",)

    def __init__(self, data: Mapping[str, Any], changed: list[bool]) -> None:
        super().__init__(data)
        self._changed = changed

    def _mark(self) -> None:
        self._changed[0] = True

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._mark()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._mark()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._mark()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._mark()
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._mark()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._mark()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._mark()

    def __ior__(self, other: Any) -> ParamGroup:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickles and deep-copies as a plain dict
        return (dict, (dict(self),))


def _named_arrays(params: Any, next_index: int) -> tuple[list[Any], list[Hashable]]:
    """Arrays and their names from a list, a dict name -> array, or (name, array) pairs."""
    if isinstance(params, np.ndarray):
        return [params], [next_index]
    if isinstance(params, Mapping):
        return list(params.values()), list(params.keys())
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"params must be arrays, a dict name -> array or a list of group dicts, got "
                        f"{type(params).__name__}")
    items = list(params)
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items):
        return [a for _, a in items], [n for n, _ in items]
    return items, list(range(next_index, next_index + len(items)))


class Optimizer:
    """Base class: holds param groups and state, and steps every array in one native call.

    Subclasses set ``_rule`` (the native rule), ``_slots`` (state names in the rule's slot
    order) and implement ``_check_group``, ``_needed_slots`` and ``_row``.
    """

    _rule: ClassVar[str]
    _slots: ClassVar[tuple[str, ...]]

    def __init__(self, params: Any, defaults: Mapping[str, Any]) -> None:
        self._check_group(dict(defaults))
        self.defaults = dict(defaults)
        self._changed = [False]
        self._lock = threading.Lock()
        self.param_groups: list[ParamGroup] = []
        self.state: dict[Hashable, dict[str, np.ndarray]] = {}
        self._plan: Any = None
        if isinstance(params, np.ndarray):
            raise TypeError("params must be an iterable of arrays, a dict name -> array or a list of group "
                            "dicts, not a single array: wrap it in a list")
        if isinstance(params, Mapping) and "params" not in params:
            groups: list[Any] = [{"params": params}]
        elif isinstance(params, Mapping):
            groups = [params]
        else:
            groups = list(params) if isinstance(params, Iterable) else [params]
            if groups and not isinstance(groups[0], Mapping):
                groups = [{"params": groups}]  # the list, not `params`: a generator is spent by now
        if not groups:
            raise ValueError("params is empty: the optimizer has nothing to update")
        for raw in groups:
            self._append_group(raw)
        self._build([(0, True)] * len(self.param_groups))

    # ---- what each rule provides --------------------------------------------------------
    def _check_group(self, group: Mapping[str, Any]) -> None:
        """Raise TypeError/ValueError naming the first invalid hyper-parameter of `group`."""
        raise NotImplementedError

    def _needed_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays this group's settings use."""
        raise NotImplementedError

    def _row(self, group: Mapping[str, Any]) -> list[float]:
        """The group's hyper-parameters as the native rule's row of doubles."""
        raise NotImplementedError

    @classmethod
    def _scalar_names(cls) -> tuple[str, ...]:
        """Running per-group scalars of the rule (NAdam's mu_product), saved with each parameter."""
        return tuple(_core.rules()[cls._rule]["scalars"])

    # ---- groups ---------------------------------------------------------------------------
    def _all_params(self) -> tuple[list[str], list[np.ndarray]]:
        labels = [f"params[{n!r}]" for g in self.param_groups for n in g["param_names"]]
        arrays = [p for g in self.param_groups for p in g["params"]]
        return labels, arrays

    def _append_group(self, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise TypeError(f"a param group must be a dict, got {type(raw).__name__}")
        if "params" not in raw:
            raise ValueError("a param group needs a 'params' entry")
        next_index = sum(isinstance(n, int) for g in self.param_groups for n in g["param_names"])
        arrays, names = _named_arrays(raw["params"], next_index)
        if "param_names" in raw:
            names = list(raw["param_names"])
            if len(names) != len(arrays):
                raise ValueError("param_names and params differ in length")
        if not arrays:
            raise ValueError("a param group has no parameters")
        labels = [f"params[{n!r}]" for n in names]
        for label, array in zip(labels, arrays):
            check_param_array(label, array)
        known = {n for g in self.param_groups for n in g["param_names"]}
        for n in names:
            if not isinstance(n, Hashable):
                raise TypeError(f"parameter names must be hashable, got {type(n).__name__}")
            if n in known:
                raise ValueError(f"parameter name {n!r} is given twice")
            known.add(n)
        old_labels, old_arrays = self._all_params()
        check_disjoint(old_labels + labels, old_arrays + arrays)
        group = {**self.defaults, **{k: v for k, v in raw.items() if k not in _RESERVED}}
        self._check_group(group)
        group["params"] = list(arrays)
        group["param_names"] = list(names)
        self.param_groups.append(ParamGroup(group, self._changed))

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group (torch's ``add_param_group``); its state starts empty, at step 0."""
        with self._lock:
            clocks = self._clocks()
            self._append_group(param_group)
            self._build(clocks + [(0, True)])

    # ---- the native plan ------------------------------------------------------------------
    def _clocks(self) -> list[tuple[Any, ...]]:
        """Each group's (steps done, fresh, running scalars), to carry into a rebuilt plan."""
        return [(self._plan.steps_done(i), self._plan.fresh(i), self._plan.scalars(i))
                for i in range(len(self._plan_groups))]

    def _build(self, clocks: Sequence[tuple[Any, ...]]) -> None:
        """Allocate missing state (once, in the parameter's dtype and layout) and point a new plan at it."""
        self._changed[0] = False  # before the groups are read: a concurrent edit then survives
        params, states, group_of, names = [], [], [], []
        clocks = list(clocks)
        for index, group in enumerate(self.param_groups):
            needed = self._needed_slots(group)
            for name, param in zip(group["param_names"], group["params"]):
                slots = self.state.setdefault(name, {})
                for slot in needed:
                    if slot not in slots:
                        slots[slot] = state_like(param)
                        clocks[index] = (clocks[index][0], True, *clocks[index][2:])
                params.append(param)
                states.append([slots.get(s) for s in self._slots])
                group_of.append(index)
                names.append(name)
        plan = _core.Plan(self._rule, params, states, group_of, names, len(self.param_groups))
        for index, group in enumerate(self.param_groups):
            plan.set_hyper(index, self._row(group))
            plan.set_clock(index, *clocks[index][:2])
            if len(clocks[index]) > 2:
                plan.set_scalars(index, clocks[index][2])
        self._plan = plan
        self._plan_groups = list(self.param_groups)
        self._group_arrays = [(g["params"], len(g["params"])) for g in self.param_groups]
        self._group_slots = [self._needed_slots(g) for g in self.param_groups]

    def _refresh(self) -> None:
        """Revalidate edited groups, then hand the new hyper-parameters to the plan.

        Runs once after any edit (a scheduler's every step), so it checks only what an edit can
        change: the hyper-parameters, and whether new state arrays are needed. The flag is
        cleared before the groups are read, so an edit another thread makes meanwhile is seen
        at the next step rather than lost."""
        self._changed[0] = False
        try:
            for index, group in enumerate(self.param_groups):
                arrays, count = self._group_arrays[index]
                if group.get("params") is not arrays or len(arrays) != count:
                    raise ValueError(f"param_groups[{index}]['params'] was changed; the arrays of a group are "
                                     "fixed (use add_param_group to add parameters)")
                self._check_group(group)
            if any(self._needed_slots(g) != slots for g, slots in zip(self.param_groups, self._group_slots)):
                self._build(self._clocks())
                return
            for index, group in enumerate(self.param_groups):
                self._plan.set_hyper(index, self._row(group))
        except BaseException:
            self._changed[0] = True  # still to be applied once the groups are valid
            raise

    # ---- stepping -------------------------------------------------------------------------
    def step(self, grads: Mapping[Any, np.ndarray] | Sequence[np.ndarray]) -> None:
        """Update every parameter in place from `grads`: a dict keyed like the parameters, or
        a list in their order. Each gradient must have its parameter's dtype, shape and memory
        order. Steps of one optimizer from several threads are serialized."""
        with self._lock:
            if self._changed[0]:
                self._refresh()
            self._plan.step(grads)

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state as plain dicts of NumPy arrays (copies) and Python scalars, keyed by
        parameter name; picklable. ``param_groups`` lists each group's names under ``params``."""
        with self._lock:
            state: dict[Hashable, dict[str, Any]] = {}
            for index, group in enumerate(self.param_groups):
                steps = self._plan.steps_done(index)
                scalars = dict(zip(self._scalar_names(), self._plan.scalars(index)))
                for name in group["param_names"]:
                    entry: dict[str, Any] = {"step": steps, **scalars}
                    entry.update({k: v.copy(order="K") for k, v in self.state[name].items()})
                    state[name] = entry
            groups = [{**{k: v for k, v in g.items() if k not in _RESERVED}, "params": list(g["param_names"])}
                      for g in self.param_groups]
            return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Everything is checked first (group count, names, hyper-
        parameters, state shapes and dtypes); on any error nothing changes. A resumed run
        continues bit-identically."""
        with self._lock:
            merged, loaded, clocks, scalars = self._check_state_dict(state_dict)
            for group, hyper in zip(self.param_groups, merged):
                group.update(hyper)
            for group in self.param_groups:
                for name, param in zip(group["param_names"], group["params"]):
                    slots = self.state.setdefault(name, {})
                    for slot, saved in loaded[name].items():
                        if slot not in slots:
                            slots[slot] = state_like(param)
                        np.copyto(slots[slot], saved)
                    for slot in slots.keys() - loaded[name].keys():
                        slots[slot].fill(0)
            self._build(clocks)
            for index, values in enumerate(scalars):
                self._plan.set_scalars(index, values)

    def _check_state_dict(self, state_dict: Mapping[str, Any]) -> tuple[
            list[dict[str, Any]], dict[Hashable, dict[str, np.ndarray]], list[tuple[int, bool]], list[list[float]]]:
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= state_dict.keys():
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise TypeError("state_dict['state'] must be a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups; the optimizer has "
                             f"{len(self.param_groups)}")
        merged, loaded, clocks, scalars = [], {}, [], []
        scalar_names = self._scalar_names()
        scalar_init = list(_core.rules()[self._rule]["scalar_init"])
        for index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if list(saved.get("params", ())) != group["param_names"]:
                raise ValueError(f"param_groups[{index}] of state_dict holds parameters "
                                 f"{list(saved.get('params', ()))!r}; "
                                 f"the optimizer's group holds {group['param_names']!r}")
            hyper = {**{k: v for k, v in group.items() if k not in _RESERVED},
                     **{k: v for k, v in saved.items() if k not in _RESERVED}}
            self._check_group(hyper)
            needed = self._needed_slots(hyper)
            steps = None
            group_scalars = None
            for name, param in zip(group["param_names"], group["params"]):
                entry = saved_state.get(name, {"step": 0})
                if not isinstance(entry, Mapping) or "step" not in entry:
                    raise ValueError(f"state_dict['state'][{name!r}] must be a dict with a 'step'")
                step = entry["step"]
                if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                    raise ValueError(f"state_dict['state'][{name!r}]['step'] must be an integer >= 0, got {step!r}")
                if steps is not None and step != steps:
                    raise ValueError(f"the parameters of param_groups[{index}] have different steps in state_dict")
                steps = int(step)
                values = [entry.get(n) for n in scalar_names]
                if None in values:
                    if step > 0:
                        raise ValueError(f"state_dict['state'][{name!r}] lacks {scalar_names[values.index(None)]!r}")
                    values = scalar_init
                if any(isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) for v in values):
                    raise TypeError(f"state_dict['state'][{name!r}]: {', '.join(scalar_names)} must be numbers")
                if group_scalars is not None and values != group_scalars:
                    raise ValueError(f"the parameters of param_groups[{index}] have different "
                                     f"{', '.join(scalar_names)} in state_dict")
                group_scalars = [float(v) for v in values]
                arrays = {}
                for slot, value in entry.items():
                    if slot == "step" or slot in scalar_names:
                        continue
                    label = f"state_dict['state'][{name!r}][{slot!r}]"
                    if slot not in self._slots:
                        raise ValueError(f"{label}: {type(self).__name__} has no state named {slot!r}")
                    if not isinstance(value, np.ndarray):
                        raise TypeError(f"{label} must be a numpy.ndarray, got {type(value).__name__}")
                    if value.dtype != param.dtype:
                        raise TypeError(f"{label} has dtype {value.dtype}; its parameter is {param.dtype}")
                    if value.shape != param.shape:
                        raise ValueError(f"{label} has shape {value.shape}; its parameter has shape {param.shape}")
                    arrays[slot] = value
                missing = [s for s in needed if s not in arrays]
                if steps > 0 and missing:
                    raise ValueError(f"state_dict['state'][{name!r}] lacks {missing[0]!r}, which step {steps} needs")
                loaded[name] = arrays
            merged.append(hyper)
            clocks.append((steps or 0, not steps))
            scalars.append(group_scalars if group_scalars is not None else scalar_init)
        ours = {n for g in self.param_groups for n in g["param_names"]}
        for name in saved_state:
            if name not in ours:
                raise ValueError(f"state_dict['state'] has an entry for {name!r}, which is not a parameter "
                                 "of this optimizer")
        return merged, loaded, clocks, scalars

    # ---- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for key in sorted(k for k in group if k not in _RESERVED):
                lines.append(f"    {key}: {group[key]}")
            arrays = group["params"]
            dtypes = "/".join(sorted({str(a.dtype) for a in arrays}))
            lines.append(f"    params: {len(arrays)} arrays, {sum(a.size for a in arrays):,} elements ({dtypes})")
        lines.append(")")
        return "\n".join(lines)
