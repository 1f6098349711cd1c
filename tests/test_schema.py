"""Each rule's schema (its C++ header's fields and slots) against everything that depends on it.

The Python signatures state the schema's defaults; every field's range is what a group is
checked against; every native rule is tested (a registry row with a reference) and benchmarked
(a Python bench row; the C++ microbenchmark takes every rule); and the bytes a step moves follow
from the slots a setting uses.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

import numpy as np
import pytest

import fastoptim as fo
import reference
from fastoptim import _bench, _core
from fastoptim._schema import schema_of
from registry import CASES

# Native rules that are not an optimizer's step: Lookahead's sync runs every k steps inside the
# optimizer it wraps, whose own rule the benchmarks time; Schedule-Free's switch runs at
# train() and eval().
NOT_A_STEP = {"lookahead", "schedule_free_switch"}

OPTIMIZERS = sorted((c for c in vars(fo).values()
                     if isinstance(c, type) and issubclass(c, fo.Optimizer) and c is not fo.Optimizer),
                    key=lambda c: c.__name__)


def _rules_of(case: Any) -> set[str]:
    opt = case.cls([np.zeros(1)], **case.arg_sets[0])
    if isinstance(opt, fo.Lookahead):
        return {"lookahead", opt.optimizer._rule}
    if isinstance(opt, (fo.ScheduleFreeAdamW, fo.ScheduleFreeSGD)):
        return {"schedule_free_switch", opt._rule}
    return {opt._rule}


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_signature_defaults_are_the_schema_defaults(cls: type[fo.Optimizer]) -> None:
    schema = cls._schema
    expected = {**schema.defaults(), **cls._schema_defaults}
    signature = inspect.signature(cls)
    arguments = [p for p in signature.parameters.values()
                 if p.name != "params" and p.kind is not inspect.Parameter.VAR_KEYWORD  # **options: not hyper
                 # cautious chooses the rule (its _cautious_rule, of the same schema), it is no field of it
                 and not (p.name == "cautious" and cls._cautious_rule is not None)
                 # rowwise=True gives another optimizer (fo.RowwiseAdagrad), it is no field of this one's
                 and not (p.name == "rowwise" and cls is fo.Adagrad)]
    if cls._cautious_rule is not None:  # off unless asked for, by name
        cautious = signature.parameters["cautious"]
        assert cautious.default is False and cautious.kind is inspect.Parameter.KEYWORD_ONLY, cls.__name__
    for p in arguments:
        assert p.name in expected, f"{cls.__name__}({p.name}=...) is not in the {schema.rule} schema"
        default = expected[p.name]
        assert p.default == default and type(p.default) is type(default), (cls.__name__, p.name, p.default, default)
    # What the signature does not take is either fixed by the class or read from another key.
    fixed = set(expected) - {p.name for p in arguments}
    fallbacks = {f.base for f in schema.fields if f.fallback is not None}
    assert fixed - fallbacks <= set(cls._schema_defaults), (cls.__name__, fixed)
    group = cls([np.zeros(1)]).param_groups[0]
    for key in fixed - fallbacks:
        assert group[key] == cls._schema_defaults[key], (cls.__name__, key)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_field_is_checked_against_its_range(cls: type[fo.Optimizer]) -> None:
    for field in cls._schema.fields:
        if field.fallback is not None:
            continue
        if field.is_flag:
            bad_values: list[Any] = [1.5, "yes"]
            error: type[Exception] = TypeError
        else:
            outside = [v for v in (field.low, field.high) if v is not None]
            bad_values = [float("nan")] + [v - 1 if v == field.low else v + 1 for v in outside]
            if field.low is not None and field.low_open:
                bad_values.append(field.low)
            if field.high is not None and field.high_open:
                bad_values.append(field.high)
            error = ValueError
        for bad in bad_values:
            group = cls._schema.defaults()
            if field.element is None:
                group[field.base] = bad
            else:
                group[field.base] = tuple(bad if i == field.element else v for i, v in enumerate(group[field.base]))
            kwargs = {k: v for k, v in group.items() if k in inspect.signature(cls).parameters}
            if field.base not in kwargs:
                continue  # fixed by the class
            with pytest.raises(error, match=re.escape(field.key)):
                cls([np.zeros(1)], **kwargs)


def test_schemas_are_well_formed() -> None:
    for rule, info in _core.rules().items():
        schema = schema_of(rule)
        names = [f.name for f in schema.fields]
        keys = [f.key for f in schema.fields]
        assert len(set(names)) == len(names) and len(set(keys)) == len(keys), rule
        assert [s.name for s in schema.slots] == [s["name"] for s in info["slots"]]
        for f in schema.fields:
            inside = (f.low is None or f.default > f.low or (not f.low_open and f.default == f.low)) and (
                f.high is None or f.default < f.high or (not f.high_open and f.default == f.high))
            assert inside and math.isfinite(f.default), (rule, f.name)
        for s in schema.slots:
            assert s.needed_when is None or s.needed_when in names, (rule, s.name)
            assert s.shape == "like_param", (rule, s.name)  # the only shape the kernels take so far


def test_every_native_rule_is_tested_and_benchmarked() -> None:
    native = set(_core.rules())
    tested = set().union(*(_rules_of(case) for case in CASES))
    assert native == tested, f"no registry row: {native - tested}; no such rule: {tested - native}"
    assert all(hasattr(reference, rule) for rule in native), [r for r in native if not hasattr(reference, r)]
    made = [r.make_fastoptim([np.zeros(1, np.float32)]) for r in _bench.RULES.values()]  # bf16 state: float32
    # cautious=True: its own rule; Adafactor (a PerArrayOptimizer) has no native rule of the table
    benched = {opt._rule for opt in made if isinstance(opt, fo.Optimizer)}
    assert native - NOT_A_STEP == benched, f"no bench row: {native - NOT_A_STEP - benched}"
    # bench/cpp/microbench.cpp steps every rule of rule_table() that reads gradients.
    assert {r for r in native if _core.rules()[r]["needs_grad"]} == native - NOT_A_STEP


# What one step reads and writes per element, written out from each rule's update formula.
PASSES = {
    ("SGD", ()): ((2, 1),),  # p, g -> p
    ("SGD", (("momentum", 0.9),)): ((3, 2),),  # p, g, b -> p, b
    ("SGDW", (("momentum", 0.9), ("weight_decay", 0.1))): ((3, 2),),  # the same: the decay is in the sweep
    ("Adam", ()): ((4, 3),),  # p, g, m, v -> p, m, v
    ("Adam", (("amsgrad", True),)): ((5, 4),),  # and v̂
    ("Adagrad", ()): ((3, 2),),
    ("Adadelta", ()): ((4, 3),),
    ("RMSprop", ()): ((3, 2),),
    ("RMSprop", (("momentum", 0.9), ("centered", True))): ((5, 4),),
    ("Rprop", ()): ((4, 3),),  # p, g, prev, step -> p, prev, step
    ("Adamax", ()): ((4, 3),),
    ("NAdam", ()): ((4, 3),),
    ("RAdam", ()): ((4, 3),),
    ("AdaBound", ()): ((4, 3),),
    ("LAMB", ()): ((4, 2), (3, 1)),  # norms: p, g, m, v -> m, v; update: p, m, v -> p
    ("LARS", ()): ((2, 0), (3, 2)),  # norms: p, g; update: p, g, b -> p, b
    ("Lion", ()): ((3, 2),),
    ("ASGD", ()): ((3, 2),),  # p, g, ax -> p, ax
    ("ADOPT", ()): ((4, 3),),
    ("Adan", ()): ((6, 5),),  # p, g, m, s, n, g_prev -> p, m, s, n, g_prev
    ("AdEMAMix", ()): ((5, 4),),  # p, g, m1, v, m2 -> p, m1, v, m2
    ("ScheduleFreeAdamW", ()): ((4, 3),),  # p, g, z, v -> p, z, v
    ("ScheduleFreeSGD", ()): ((3, 2),),  # p, g, z -> p, z
    # Cautious: a first sweep counts the agreeing components, reading p, g and every slot in use
    # and writing nothing; the second is the plain rule's.
    ("Adam", (("cautious", True),)): ((4, 0), (4, 3)),
    ("Adam", (("amsgrad", True), ("cautious", True))): ((5, 0), (5, 4)),
    ("AdamW", (("cautious", True),)): ((4, 0), (4, 3)),
    ("SGD", (("cautious", True),)): ((2, 0), (2, 1)),  # no momentum, nothing to mask: the count still runs
    ("SGD", (("momentum", 0.9), ("cautious", True))): ((3, 0), (3, 2)),
    ("SGDW", (("momentum", 0.9), ("weight_decay", 0.1), ("cautious", True))): ((3, 0), (3, 2)),
    ("Lion", (("cautious", True),)): ((3, 0), (3, 2)),
    ("AdEMAMix", (("cautious", True),)): ((5, 0), (5, 4)),
}


@pytest.mark.parametrize(("name", "kwargs"), list(PASSES), ids=[f"{n}{dict(k)}" for n, k in PASSES])
def test_step_passes_follow_from_the_slots_used(name: str, kwargs: tuple[tuple[str, Any], ...]) -> None:
    opt = getattr(fo, name)([np.zeros(1)], **dict(kwargs))
    # the optimizer's own rule: a cautious one shares the class's schema, not its sweeps
    assert opt._schema.passes(opt.param_groups[0], opt._rule) == PASSES[name, kwargs]
    assert PASSES[name, kwargs][-1] == opt._schema.passes(opt.param_groups[0])[-1]  # its last is the plain rule's


def test_step_passes_refuses_what_no_rule_has() -> None:
    with pytest.raises(ValueError, match="unknown rule"):
        _core.step_passes("adamm", 0)
    with pytest.raises(ValueError, match="slots_used"):
        _core.step_passes("adam", 4)
