"""Checkpoints: plain picklable dicts, validated, applied all-or-nothing, resumed bit-identically."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem
from registry import ARG_CASES, arg_id

SHAPES = [(5, 3), (1025,), ()]


def _named(arrays):
    return {f"layer{i}": a for i, a in enumerate(arrays)}


@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_resumed_run_continues_bit_identically(case, kwargs, rng):
    params, grads = make_problem(rng, SHAPES, np.float32, 8)
    resumed_params = [p.copy() for p in params]

    straight = case.cls(_named(params), **kwargs)
    for g in grads:
        straight.step(_named(g))

    first = case.cls(_named(resumed_params), **kwargs)
    for g in grads[:3]:
        first.step(_named(g))
    saved = pickle.loads(pickle.dumps((first.state_dict(), [p.copy() for p in resumed_params])))
    fresh_params = saved[1]
    second = case.cls(_named(fresh_params), **kwargs)
    second.load_state_dict(saved[0])
    for g in grads[3:]:
        second.step(_named(g))
    for a, b in zip(params, fresh_params):
        assert a.tobytes() == b.tobytes()


def test_state_dict_is_plain_and_keyed_by_name(rng):
    params = _named([np.zeros((2, 2), np.float32), np.zeros(3)])
    opt = fo.Adam(params, lr=0.1, amsgrad=True)
    opt.step(_named([np.ones((2, 2), np.float32), np.ones(3)]))
    sd = opt.state_dict()
    assert set(sd["state"]) == {"layer0", "layer1"}
    assert sd["state"]["layer0"]["step"] == 1
    assert set(sd["state"]["layer0"]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["param_groups"][0]["params"] == ["layer0", "layer1"]
    assert sd["param_groups"][0]["lr"] == 0.1
    assert type(sd["param_groups"][0]) is dict
    # copies: later steps do not change a saved state dict
    before = sd["state"]["layer0"]["exp_avg"].copy()
    opt.step(_named([np.ones((2, 2), np.float32), np.ones(3)]))
    assert (sd["state"]["layer0"]["exp_avg"] == before).all()
    assert copy.deepcopy(sd)["state"]["layer1"]["step"] == 1


def test_load_restores_hyper_parameters():
    opt = fo.SGD([np.zeros(3)], lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.5
    other = fo.SGD([np.zeros(3)], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.5


def _bad_state_dicts():
    def edited(change):
        opt = fo.Adam({"w": np.zeros((2, 3), np.float32)}, lr=0.1)
        opt.step({"w": np.ones((2, 3), np.float32)})
        sd = opt.state_dict()
        change(sd, sd["state"]["w"], sd["param_groups"][0])
        return sd

    return [
        ("shape", edited(lambda sd, w, g: w.update(exp_avg=np.zeros((3, 2), np.float32))), ValueError,
         r"shape \(3, 2\)"),
        ("dtype", edited(lambda sd, w, g: w.update(exp_avg=np.zeros((2, 3)))), TypeError, "dtype float64"),
        ("group count", edited(lambda sd, w, g: sd["param_groups"].append(dict(g))), ValueError, "2 param groups"),
        ("names", edited(lambda sd, w, g: g.update(params=["v"])), ValueError, "holds parameters"),
        ("bad lr", edited(lambda sd, w, g: g.update(lr=-1.0)), ValueError, "lr must be >= 0"),
        ("missing slot", edited(lambda sd, w, g: w.pop("exp_avg_sq")), ValueError, "lacks 'exp_avg_sq'"),
        ("unknown slot", edited(lambda sd, w, g: w.update(momentum=np.zeros((2, 3), np.float32))), ValueError,
         "no state named 'momentum'"),
        ("unknown param", edited(lambda sd, w, g: sd["state"].update(v={"step": 1})), ValueError, "not a parameter"),
        ("negative step", edited(lambda sd, w, g: w.update(step=-2)), ValueError, "step"),
        ("not a dict", [1, 2], TypeError, "state_dict must be a dict"),
    ]


def _label(value):
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("what", "sd", "error", "message"), _bad_state_dicts(), ids=_label)
def test_bad_state_dict_is_refused_and_nothing_changes(what, sd, error, message):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    opt = fo.Adam({"w": w}, lr=0.2)
    opt.step({"w": np.full((2, 3), 0.5, np.float32)})
    before = opt.state_dict()
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["state"]["w"]["step"] == before["state"]["w"]["step"]
    for k in ("exp_avg", "exp_avg_sq"):
        assert after["state"]["w"][k].tobytes() == before["state"]["w"][k].tobytes()
