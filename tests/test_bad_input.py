"""Every bad input is refused with a message naming the problem, before anything changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastoptim as fo


def _label(value):
    return value if isinstance(value, str) else ""


def _bad_constructions():
    big = np.zeros((4, 6), np.float32)
    readonly = np.zeros(4, np.float32)
    readonly.flags.writeable = False
    shared = np.zeros(20, np.float32)
    return [
        ("strided view", lambda: fo.SGD([big[:, ::2]]), ValueError, "not contiguous"),
        ("int dtype", lambda: fo.SGD([np.zeros(3, np.int64)]), TypeError, "dtype int64"),
        ("float16", lambda: fo.Adam([np.zeros(3, np.float16)]), TypeError, "dtype float16"),
        ("big-endian", lambda: fo.Adam([np.zeros(3, ">f4")]), TypeError, "byte order"),
        ("read-only", lambda: fo.SGD([readonly]), ValueError, "read-only"),
        ("list, not array", lambda: fo.SGD([[1.0, 2.0]]), TypeError, "numpy.ndarray"),
        ("single array", lambda: fo.SGD(np.zeros(3)), TypeError, "single array"),
        ("empty", lambda: fo.SGD([]), ValueError, "empty"),
        ("same array twice", lambda: fo.SGD([big, big]), ValueError, "same array"),
        ("overlap", lambda: fo.SGD({"a": shared[:10], "b": shared[5:15]}), ValueError, "share memory"),
        ("duplicate name", lambda: fo.SGD([{"params": {"a": np.zeros(2)}}, {"params": {"a": np.zeros(2)}}]),
         ValueError, "given twice"),
        ("negative lr", lambda: fo.SGD([np.zeros(3)], lr=-1.0), ValueError, "lr must be >= 0"),
        ("nan lr", lambda: fo.Adam([np.zeros(3)], lr=math.nan), ValueError, "lr must be finite"),
        ("string lr", lambda: fo.Adam([np.zeros(3)], lr="0.1"), TypeError, "lr must be a real number"),
        ("beta1 = 1", lambda: fo.Adam([np.zeros(3)], betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be < 1"),
        ("beta2 < 0", lambda: fo.AdamW([np.zeros(3)], betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be >= 0"),
        ("one beta", lambda: fo.Adam([np.zeros(3)], betas=(0.9,)), TypeError, "betas must be a tuple of 2"),
        ("negative eps", lambda: fo.Adam([np.zeros(3)], eps=-1e-8), ValueError, "eps must be >= 0"),
        ("negative wd", lambda: fo.AdamW([np.zeros(3)], weight_decay=-0.1), ValueError, "weight_decay"),
        ("negative momentum", lambda: fo.SGD([np.zeros(3)], momentum=-0.5), ValueError, "momentum must be >= 0"),
        ("nesterov w/o momentum", lambda: fo.SGD([np.zeros(3)], nesterov=True), ValueError, "nesterov"),
        ("nesterov w/ dampening", lambda: fo.SGD([np.zeros(3)], momentum=0.9, dampening=0.1, nesterov=True),
         ValueError, "nesterov"),
        ("amsgrad not bool", lambda: fo.Adam([np.zeros(3)], amsgrad=1), TypeError, "amsgrad must be True or False"),
    ]


@pytest.mark.parametrize(("what", "make", "error", "message"), _bad_constructions(), ids=_label)
def test_bad_construction_is_refused(what, make, error, message):
    with pytest.raises(error, match=message):
        make()


def _optimizer():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(4, dtype=np.float64)
    return fo.Adam({"w": w, "b": b}, lr=0.1, amsgrad=True), w, b


def _good_grads():
    return {"w": np.ones((3, 4), np.float32), "b": np.ones(4)}


def _bad_steps():
    g = _good_grads()
    return [
        ("missing key", {"w": g["w"]}, ValueError, "no entry for parameter 'b'"),
        ("extra key", {**g, "c": np.ones(2)}, ValueError, "entry for 'c'"),
        ("short list", [g["w"]], ValueError, "has 1 arrays; the optimizer has 2"),
        ("not a container", (x for x in g.values()), TypeError, "grads must be a dict"),
        ("not an array", {**g, "b": [1.0] * 4}, TypeError, r"grads\['b'\] must be a numpy.ndarray"),
        ("wrong dtype", {**g, "w": np.ones((3, 4))}, TypeError,
         r"grads\['w'\] has dtype float64; its parameter is float32"),
        ("wrong shape", {**g, "w": np.ones((4, 3), np.float32)}, ValueError,
         r"shape \(4, 3\); its parameter has shape \(3, 4\)"),
        ("wrong order", {**g, "w": np.asfortranarray(np.ones((3, 4), np.float32))}, ValueError,
         r"memory order \(C-contiguous expected\): pass np.ascontiguousarray\(g\)"),
        ("strided", {**g, "w": np.ones((3, 8), np.float32)[:, ::2]}, ValueError, "not contiguous"),
        ("big-endian", {**g, "b": np.ones(4, ">f8")}, TypeError, "has dtype"),
    ]


def _snapshot(opt, *arrays):
    return [a.tobytes() for a in arrays] + [a.tobytes() for s in opt.state.values() for a in s.values()]


@pytest.mark.parametrize(("what", "grads", "error", "message"), _bad_steps(), ids=_label)
def test_bad_grads_are_refused_and_nothing_changes(what, grads, error, message):
    opt, w, b = _optimizer()
    opt.step(_good_grads())
    before = _snapshot(opt, w, b)
    with pytest.raises(error, match=message):
        opt.step(grads)
    assert _snapshot(opt, w, b) == before
    assert opt.state_dict()["state"]["w"]["step"] == 1
    opt.step(_good_grads())  # still usable
    assert opt.state_dict()["state"]["w"]["step"] == 2


@pytest.mark.parametrize(("what", "grads", "error", "message"), _bad_steps(), ids=_label)
def test_the_distributed_check_is_the_steps_own(what, grads, error, message):
    """fastoptim.distributed checks gradients before any message with _core.check_grads: it
    refuses what the step refuses, in the same words."""
    from fastoptim import _core

    opt, w, b = _optimizer()
    with pytest.raises(error) as by_step:
        opt.step(grads)
    with pytest.raises(error, match=message) as by_check:
        _core.check_grads(grads, ["w", "b"], [w, b], False)
    assert str(by_check.value) == str(by_step.value)


def test_the_distributed_check_refuses_what_the_average_cannot_be_written_into():
    from fastoptim import _core

    w, b = np.zeros((3, 4), np.float32), np.zeros(4)
    good = _good_grads()
    assert all(g is good[k] for g, k in zip(_core.check_grads(good, ["w", "b"], [w, b], True), "wb"))
    frozen = np.ones(4)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\['b'\] is read-only"):
        _core.check_grads({**good, "b": frozen}, ["w", "b"], [w, b], True)
    assert _core.check_grads({**good, "b": frozen}, ["w", "b"], [w, b], False)[1] is frozen
    shared = np.ones(16)
    with pytest.raises(ValueError, match=r"grads\['b'\] and grads\['c'\] share memory"):
        _core.check_grads([good["w"], shared[:4], shared[2:6]], ["w", "b", "c"], [w, b, np.zeros(4)], True)
    with pytest.raises(ValueError, match=r"grads\['b'\] and params\['b'\] share memory"):
        _core.check_grads({**good, "b": b}, ["w", "b"], [w, b], True)


def test_a_grad_that_is_a_parameter_or_state_is_refused():
    opt, w, b = _optimizer()
    before = _snapshot(opt, w, b)
    with pytest.raises(ValueError, match="shares memory"):
        opt.step({"w": w, "b": np.ones(4)})
    with pytest.raises(ValueError, match="shares memory"):
        opt.step({"w": np.ones((3, 4), np.float32), "b": opt.state["b"]["exp_avg"]})
    assert _snapshot(opt, w, b) == before


@pytest.mark.parametrize(("key", "value", "error", "message"), [
    ("lr", -0.1, ValueError, "lr must be >= 0"),
    ("lr", math.inf, ValueError, "lr must be finite"),
    ("betas", (0.9, 1.0), ValueError, r"betas\[1\] must be < 1"),
    ("amsgrad", "yes", TypeError, "amsgrad"),
])
def test_an_invalid_edit_of_a_group_is_refused_at_the_next_step(key, value, error, message):
    opt, w, b = _optimizer()
    before = _snapshot(opt, w, b)
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=message):
        opt.step(_good_grads())
    assert _snapshot(opt, w, b) == before
    opt.param_groups[0][key] = opt.defaults[key] if key != "lr" else 0.1
    opt.step(_good_grads())


def test_replacing_a_groups_arrays_is_refused():
    opt, w, b = _optimizer()
    opt.param_groups[0]["params"] = [np.zeros(3)]
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step(_good_grads())
