"""A state machine that interleaves steps with every public mutation (issue 15).

After each rule, either the call raised (TypeError/ValueError) with nothing changed, or the
optimizer is what it shows: a twin built from scratch out of what ``param_groups`` and
``state`` show (and the step counts of ``state_dict``) steps to the same bits. Unfit edits are
refused at the next step, then undone. FASTOPTIM_STATEFUL_EXAMPLES sets the number of examples
(200 by default; CI's device run asks for 5,000).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from inplace import set_in_place

import fastoptim as fo
from fastoptim import lr_scheduler

EXAMPLES = int(os.environ.get("FASTOPTIM_STATEFUL_EXAMPLES", "200"))

# name -> (factory from groups, hyper-parameters it may edit: key -> (valid values, invalid values))
KINDS: dict[str, tuple[Callable[[Any], Any], dict[str, tuple[list[Any], list[Any]]]]] = {
    "sgd": (lambda groups: fo.SGD(groups, lr=0.05, momentum=0.9),
            {"lr": ([0.01, 0.1], [-1.0, float("nan"), "x"]), "momentum": ([0.0, 0.5, 0.9], [-0.1]),
             "weight_decay": ([0.0, 0.01], [float("inf")]), "dampening": ([0.0, 0.2], [None])}),
    "adam": (lambda groups: fo.Adam(groups, lr=0.01, amsgrad=True),
             {"lr": ([0.001, 0.02], [float("nan")]), "betas": ([(0.9, 0.999), [0.8, 0.99]], [(1.0, 0.9), (0.9,)]),
              "amsgrad": ([True, False], [1]), "weight_decay": ([0.0, 0.1], [-0.1])}),
    "nadam": (lambda groups: fo.NAdam(groups, lr=0.01),
              {"lr": ([0.001, 0.02], [float("-inf")]), "momentum_decay": ([0.004, 0.01], [-1.0])}),
    "lamb": (lambda groups: fo.LAMB(groups, lr=0.01),
             {"lr": ([0.001, 0.02], [float("nan")]), "weight_decay": ([0.0, 0.01], ["heavy"])}),
    "lookahead": (lambda groups: fo.Lookahead(fo.SGD(groups, lr=0.05, momentum=0.5), k=2, alpha=0.5),
                  {"lr": ([0.01, 0.1], [-1.0]), "momentum": ([0.0, 0.5], [2.0j])}),
}
SHAPES = [("a", (4, 3), np.float32, "C"), ("b", (5,), np.float64, "C"), ("c", (3, 2), np.float32, "F")]


def _inner(opt: Any) -> Any:
    return opt.optimizer if isinstance(opt, fo.Lookahead) else opt


def _array(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, order: str, low: float = -1.0) -> np.ndarray:
    return np.asarray(rng.uniform(low, 1.0, shape), dtype, order=order)


class OptimizerMachine(RuleBasedStateMachine):
    """One optimizer (one of KINDS), its parameters, and every way users edit it."""

    def __init__(self) -> None:
        super().__init__()
        self.opt: Any = None
        self.kind = ""
        self.scheduler: Any = None
        self.groups_added = 0

    # ---- what the optimizer shows, and what must not change on a refusal ------------------
    def params(self) -> dict[Any, np.ndarray]:
        return self.params_of(self.opt)

    @staticmethod
    def params_of(opt: Any) -> dict[Any, np.ndarray]:
        """The parameters the optimizer was given (whatever an edit did to param_groups since)."""
        held = _inner(opt)._held
        return {n: p for names, params in zip(held.names, held.params) for n, p in zip(names, params)}

    def frozen(self) -> list[Any]:
        core = _inner(self.opt)
        held = core._held
        out: list[Any] = [a.tobytes() for ps in held.params for a in ps]
        out += [(n, s, a.tobytes()) for n, slots in held.states.items() for s, a in sorted(slots.items())]
        out += [core._clocks(), [sorted((k, repr(v)) for k, v in g.items() if k not in ("params", "param_names"))
                                 for g in held.groups]]
        if isinstance(self.opt, fo.Lookahead):
            out += [self.opt._steps, [a.tobytes() for a in self.opt._sync_slow.values()]]
        return out

    def expect_refusal(self, error: type[Exception] | tuple[type[Exception], ...], text: str | None = None) -> None:
        """The next step and the next state_dict() refuse with nothing changed."""
        before = self.frozen()
        grads = self.grads(0)
        for call in (lambda: self.opt.step(grads), self.opt.state_dict):
            with pytest.raises(error, match=text):
                call()
            assert self.frozen() == before

    def grads(self, seed: int) -> dict[Any, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {n: _array(rng, p.shape, p.dtype, "F" if p.flags.f_contiguous and not p.flags.c_contiguous else "C")
                for n, p in self.params().items()}

    def twin(self) -> Any:
        """An optimizer built from scratch out of what this one shows: its groups' values, the
        arrays in ``state`` (and ``slow``), the step counts and scalars of ``state_dict()``."""
        saved = self.opt.state_dict()
        inner_saved = saved["optimizer"] if isinstance(self.opt, fo.Lookahead) else saved
        core = _inner(self.opt)
        groups = []
        for g in core.param_groups:
            hyper = {k: v for k, v in g.items() if k not in ("params", "param_names")}
            groups.append({"params": {n: p.copy(order="K") for n, p in zip(g["param_names"], g["params"])},
                           **hyper})
        saved_groups = inner_saved["param_groups"]
        visible: dict[str, Any] = {"state": {},
                                   "param_groups": [dict(g, params=list(g["params"])) for g in saved_groups]}
        for name, entry in inner_saved["state"].items():
            shown = core.state[name]
            assert set(k for k in entry if isinstance(entry[k], np.ndarray)) <= set(shown), (name, set(shown))
            visible["state"][name] = {k: (shown[k].copy(order="K") if isinstance(v, np.ndarray) else v)
                                      for k, v in entry.items()}
        for g, group in zip(visible["param_groups"], groups):
            g.update({k: v for k, v in group.items() if k != "params"})
        twin = KINDS[self.kind][0](groups)
        if isinstance(self.opt, fo.Lookahead):
            twin.load_state_dict({**saved, "optimizer": visible,
                                  "slow": {n: a.copy() for n, a in self.opt.slow.items()}})
        else:
            twin.load_state_dict(visible)
        return twin

    # ---- rules -------------------------------------------------------------------------------
    @initialize(kind=st.sampled_from(sorted(KINDS)), seed=st.integers(0, 2**16))
    def build(self, kind: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        arrays = {name: _array(rng, shape, dtype, order) for name, shape, dtype, order in SHAPES}
        self.kind = kind
        self.opt = KINDS[kind][0]([{"params": {"a": arrays["a"], "b": arrays["b"]}},
                                   {"params": {"c": arrays["c"]}, "lr": 0.02}])

    @rule(seed=st.integers(0, 2**16), as_list=st.booleans())
    def step(self, seed: int, as_list: bool) -> None:
        twin = self.twin()
        grads = self.grads(seed)
        self.opt.step(list(grads.values()) if as_list else grads)
        twin.step({n: g.copy(order="K") for n, g in grads.items()})
        mine, theirs = self.params(), self.params_of(twin)
        assert all(mine[n].tobytes() == theirs[n].tobytes() for n in mine), "the step differs from the twin's"
        ours, its = _inner(self.opt).state, _inner(twin).state
        for name in ours:
            for slot in ours[name]:
                if slot in its[name]:
                    assert ours[name][slot].tobytes() == its[name][slot].tobytes(), (name, slot)

    @rule(data=st.data(), valid=st.booleans())
    def edit_hyper(self, data: st.DataObject, valid: bool) -> None:
        key = data.draw(st.sampled_from(sorted(KINDS[self.kind][1])))
        good, bad = KINDS[self.kind][1][key]
        group = self.opt.param_groups[data.draw(st.integers(0, len(self.opt.param_groups) - 1))]
        if valid:
            group[key] = data.draw(st.sampled_from(good))
            return
        old = group[key]
        group[key] = data.draw(st.sampled_from(bad))
        self.expect_refusal((TypeError, ValueError))
        group[key] = old

    @rule(data=st.data(), how=st.sampled_from(["fit", "shape", "dtype", "order", "read-only", "param", "other slot",
                                               "unknown slot", "delete"]))
    def replace_state(self, data: st.DataObject, how: str) -> None:
        core = _inner(self.opt)
        names = [n for n in core.state if core.state[n]]
        if not names:
            return
        name = data.draw(st.sampled_from(names))
        slots = core.state[name]
        slot = data.draw(st.sampled_from(sorted(slots)))
        old = slots[slot]
        param = self.params()[name]
        if how == "fit":
            new = np.empty_like(old)
            new[...] = np.random.default_rng(data.draw(st.integers(0, 99))).uniform(0.1, 1.0, old.shape)
            slots[slot] = new
            return
        if how == "delete":
            del slots[slot]
        elif how == "unknown slot":
            slots["bogus"] = np.zeros_like(old)
        else:
            bad = {"shape": lambda: np.zeros(old.size + 1, old.dtype),
                   "dtype": lambda: np.zeros(old.shape, np.float64 if old.dtype == np.float32 else np.float32),
                   "order": lambda: np.zeros(old.shape, old.dtype, order="F" if old.flags.c_contiguous else "C")
                   if old.ndim == 2 else None,
                   "read-only": lambda: np.frombuffer(old.tobytes(), old.dtype).reshape(old.shape),
                   "param": lambda: param,
                   "other slot": lambda: next((a for s, a in slots.items() if s != slot), None)}[how]()
            if bad is None:
                return
            slots[slot] = bad
        try:
            self.expect_refusal((TypeError, ValueError))
        except pytest.fail.Exception:
            if how == "delete" and slot not in _inner(self.opt)._held.needed[self.group_of(name)]:
                return  # a slot the settings no longer need may go
            raise
        slots.pop("bogus", None)
        slots[slot] = old

    def group_of(self, name: Any) -> int:
        return next(i for i, g in enumerate(_inner(self.opt).param_groups) if name in g["param_names"])

    @rule(data=st.data(), how=st.sampled_from(["replace", "append", "pop", "rename", "reverse", "new list",
                                               "group appended", "group popped", "groups replaced"]))
    def tamper_structure(self, data: st.DataObject, how: str) -> None:
        groups = self.opt.param_groups
        group = groups[data.draw(st.integers(0, len(groups) - 1))]
        params, names = group["params"], group["param_names"]
        kept = (list(params), list(names), list(groups))
        stranger = np.zeros(3, np.float32)
        if how == "reverse" and len(params) < 2:
            return
        {"replace": lambda: params.__setitem__(0, stranger), "append": lambda: params.append(stranger),
         "pop": params.pop, "rename": lambda: names.__setitem__(0, "renamed"), "reverse": params.reverse,
         "new list": lambda: group.__setitem__("params", [stranger] * len(params)),
         "group appended": lambda: groups.append({"params": [stranger]}), "group popped": groups.pop,
         "groups replaced": lambda: groups.__setitem__(slice(None), list(reversed(groups)))}[how]()
        if how == "groups replaced" and len(groups) == 1:
            return
        self.expect_refusal(ValueError, "was changed")
        group["params"] = params
        params[:], names[:], self.opt.param_groups[:] = kept

    @rule(data=st.data(), how=st.sampled_from(["read-only", "dtype", "shape"]), on_state=st.booleans())
    def change_array_in_place(self, data: st.DataObject, how: str, on_state: bool) -> None:
        core = _inner(self.opt)
        if on_state:
            arrays = [a for slots in core.state.values() for a in slots.values() if a.ndim == 1]
        else:
            arrays = [p for p in self.params().values() if p.ndim == 1]
        if not arrays:
            return
        array = data.draw(st.sampled_from(arrays))
        attribute, value, undo = {"read-only": ("writeable", False, True),
                                  "dtype": ("dtype", np.int32 if array.dtype == np.float32 else np.int64, array.dtype),
                                  "shape": ("shape", (1, array.size), array.shape)}[how]
        if not set_in_place(array, attribute, value):
            return  # this NumPy refuses the change itself
        self.expect_refusal(ValueError, "since the optimizer")
        assert set_in_place(array, attribute, undo)

    @precondition(lambda self: self.groups_added < 2)
    @rule(seed=st.integers(0, 99), how=st.sampled_from(["fit", "shared", "int", "duplicate name"]))
    def add_group(self, seed: int, how: str) -> None:
        rng = np.random.default_rng(seed)
        name = f"new{self.groups_added}"
        array = {"fit": lambda: _array(rng, (6,), np.float64, "C"), "shared": lambda: self.params()["b"][1:],
                 "int": lambda: np.zeros(6, np.int32),
                 "duplicate name": lambda: _array(rng, (6,), np.float64, "C")}[how]()
        if how == "duplicate name":
            name = "a"
        if how == "fit":
            self.opt.add_param_group({"params": {name: array}, "lr": 0.03})
            self.groups_added += 1
            return
        before = self.frozen()
        with pytest.raises((TypeError, ValueError)):
            self.opt.add_param_group({"params": {name: array}})
        assert self.frozen() == before

    @rule(data=st.data(), tamper=st.booleans())
    def save_and_load(self, data: st.DataObject, tamper: bool) -> None:
        saved = self.opt.state_dict()
        inner = saved["optimizer"] if isinstance(self.opt, fo.Lookahead) else saved
        if tamper:
            name = data.draw(st.sampled_from(sorted(inner["state"])))
            key = data.draw(st.sampled_from(sorted(inner["state"][name])))
            inner["state"][name][key] = data.draw(st.sampled_from([None, "x", 2**64, -1, np.zeros(2), float("nan")]))
        before = self.frozen()
        unloaded = copy.deepcopy(self.opt)
        try:
            self.opt.load_state_dict(saved)
        except (TypeError, ValueError):
            assert tamper and self.frozen() == before
            return
        grads = self.grads(7)  # loading its own state changes nothing a step can see
        self.opt.step(grads)
        unloaded.step(grads)
        mine, theirs = self.params(), OptimizerMachine.params_of(unloaded)
        assert all(mine[n].tobytes() == theirs[n].tobytes() for n in mine)

    @rule()
    def schedule(self) -> None:
        if self.scheduler is None:
            self.scheduler = lr_scheduler.StepLR(self.opt, step_size=2, gamma=0.5)
        try:
            self.scheduler.step()
        except ValueError:  # groups were added after the scheduler was made: start another
            self.scheduler = lr_scheduler.StepLR(self.opt, step_size=2, gamma=0.5)

    @rule()
    def deep_copy(self) -> None:
        self.opt = copy.deepcopy(self.opt)
        self.scheduler = None

    @invariant()
    def usable(self) -> None:
        """Every unfit edit was refused and undone: the optimizer can be saved."""
        if self.opt is not None:
            self.opt.state_dict()


OptimizerMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.filter_too_much])
test_optimizer_machine = OptimizerMachine.TestCase
