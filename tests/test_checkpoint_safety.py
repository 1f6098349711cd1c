"""Checkpoints and copies cannot break an optimizer (issue 15, cases 6, 7, 9, 10, 12): a state
dict is refused whole or loaded whole, step counts never wrap, running scalars stay in range,
every malformed dict raises TypeError/ValueError naming its part, and optimizers pickle and
deep-copy into independent twins."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastoptim as fo
from problems import make_problem
from registry import ARG_CASES, arg_id

MAX = 2**53


def _adam():
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)}
    opt = fo.Adam(params, lr=0.1, amsgrad=True)
    opt.step({"w": np.ones((2, 3), np.float32), "b": np.ones(3)})
    return opt, params


def _everything(opt) -> list:
    """What a refused call must leave as it was: the groups' hyper-parameters, the arrays the
    plan holds (parameters and state), the state entries users see, and the clocks."""
    held = opt._held
    arrays = [a.tobytes() for ps in held.params for a in ps]
    arrays += [(n, s, a.tobytes()) for n, slots in held.states.items() for s, a in sorted(slots.items())]
    visible = [(n, s, id(a)) for n, slots in opt.state.items() for s, a in sorted(slots.items())]
    groups = [sorted((k, repr(v)) for k, v in g.items() if k not in ("params", "param_names"))
              for g in opt.param_groups]
    return [arrays, visible, groups, opt._clocks()]


# ---- case 6 and 7: step counts ------------------------------------------------------------------
@pytest.mark.parametrize("step", [2**63, np.uint64(2**64 - 1), MAX + 1, -1, 2**63 - 1])
def test_a_step_count_out_of_range_is_refused_with_nothing_changed(step):
    opt, _ = _adam()
    saved = opt.state_dict()
    for entry in saved["state"].values():
        entry["step"] = step
    saved["param_groups"][0]["lr"] = 0.5
    for entry in saved["state"].values():
        entry["exp_avg"] = entry["exp_avg"] + 1
    before = _everything(opt)
    with pytest.raises(ValueError, match=r"\['step'\] must be in \[0, 2\*\*53\]"):
        opt.load_state_dict(saved)
    assert _everything(opt) == before
    assert opt.param_groups[0]["lr"] == 0.1


def test_a_step_past_two_to_the_53_raises_and_never_wraps():
    opt, params = _adam()
    saved = opt.state_dict()
    for entry in saved["state"].values():
        entry["step"] = MAX - 1
    opt.load_state_dict(saved)
    grads = {"w": np.ones((2, 3), np.float32), "b": np.ones(3)}
    opt.step(grads)  # step 2**53: still exact
    assert np.isfinite(params["w"]).all()
    assert opt.state_dict()["state"]["w"]["step"] == MAX
    before = _everything(opt)
    with pytest.raises(ValueError, match=r"2\*\*53 steps"):
        opt.step(grads)
    assert _everything(opt) == before
    again = fo.Adam({"w": params["w"].copy(), "b": params["b"].copy()}, lr=0.1, amsgrad=True)
    again.load_state_dict(opt.state_dict())  # its own state dict still loads


# ---- case 9: running scalars --------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5, 1.5])
@pytest.mark.parametrize("count", [1, 2])
def test_nadam_mu_product_out_of_range_is_refused(value, count):
    params = [np.zeros(3) for _ in range(count)]
    opt = fo.NAdam(params, lr=0.1)
    opt.step([np.ones(3) for _ in range(count)])
    saved = opt.state_dict()
    for entry in saved["state"].values():
        entry["mu_product"] = value
    before = _everything(opt)
    with pytest.raises(ValueError, match=r"\['mu_product'\] must be a finite number in \[0.0, 1.0\]"):
        opt.load_state_dict(saved)
    assert _everything(opt) == before


# ---- case 10: malformed state dicts --------------------------------------------------------------
def _malformed():
    """(what, how to break a state dict of _adam(), error, message)."""
    def set_(path, value):
        def change(sd):
            node = sd
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        return change

    def delete(path):
        def change(sd):
            node = sd
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
        return change

    return [
        ("param_groups a list of names", set_(["param_groups"], ["p0"]), TypeError,
         r"state_dict\['param_groups'\]\[0\] must be a dict, got str"),
        ("param_groups a string", set_(["param_groups"], "p0"), TypeError,
         r"state_dict\['param_groups'\] must be a list of dicts, got str"),
        ("param_groups None", set_(["param_groups"], None), TypeError, r"state_dict\['param_groups'\] must be a list"),
        ("state a list", set_(["state"], []), TypeError, r"state_dict\['state'\] must be a dict, got list"),
        ("a group's params a string", set_(["param_groups", 0, "params"], "wb"), TypeError,
         r"\['params'\] must be a list of parameter names, got str"),
        ("a group without params", delete(["param_groups", 0, "params"]), TypeError, r"\['params'\] must be a list"),
        ("other names", set_(["param_groups", 0, "params"], ["w", "c"]), ValueError, "holds parameters"),
        ("an entry a list", set_(["state", "w"], [1, 2]), TypeError, r"state_dict\['state'\]\['w'\] must be a dict"),
        ("no step", delete(["state", "w", "step"]), ValueError, "lacks 'step'"),
        ("a float step", set_(["state", "w", "step"], 1.0), TypeError, r"\['step'\] must be an integer, got float"),
        ("a bool step", set_(["state", "w", "step"], True), TypeError, r"\['step'\] must be an integer, got bool"),
        ("a string step", set_(["state", "w", "step"], "1"), TypeError, "must be an integer, got str"),
        ("a list for an array", set_(["state", "w", "exp_avg"], [0.0] * 6), TypeError,
         r"\['exp_avg'\] must be a numpy.ndarray, got list"),
        ("wrong dtype", set_(["state", "w", "exp_avg"], np.zeros((2, 3))), TypeError, "has dtype float64"),
        ("wrong shape", set_(["state", "w", "exp_avg"], np.zeros(6, np.float32)), ValueError, "has shape"),
        ("an unknown slot", set_(["state", "w", "bogus"], np.zeros((2, 3), np.float32)), ValueError,
         "has no state named 'bogus'"),
        ("a missing slot", delete(["state", "w", "exp_avg"]), ValueError, "lacks 'exp_avg'"),
        ("an unknown parameter", set_(["state", "c"], {"step": 1}), ValueError, "entry for 'c'"),
        ("a bad lr", set_(["param_groups", 0, "lr"], "fast"), TypeError, "lr must be a real number"),
        ("a nan lr", set_(["param_groups", 0, "lr"], math.nan), ValueError, "lr must be finite"),
        ("betas of three", set_(["param_groups", 0, "betas"], (0.9, 0.9, 0.9)), TypeError, "betas must be a tuple"),
        ("two groups", lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), ValueError,
         "has 2 param groups"),
    ]


@pytest.mark.parametrize(("what", "change", "error", "message"), _malformed(), ids=[m[0] for m in _malformed()])
def test_a_malformed_state_dict_names_its_part_and_changes_nothing(what, change, error, message):
    opt, _ = _adam()
    saved = opt.state_dict()
    change(saved)
    before = _everything(opt)
    with pytest.raises(error, match=message):
        opt.load_state_dict(saved)
    assert _everything(opt) == before


def test_a_state_dict_that_is_not_a_dict():
    opt, _ = _adam()
    for bad in (None, [], "state", {"state": {}}):
        with pytest.raises(TypeError, match="state_dict must be a dict with 'state' and 'param_groups'"):
            opt.load_state_dict(bad)


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                  st.text(max_size=3), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                                            st.integers(), max_size=2),
                  st.sampled_from([np.zeros(3), np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int8),
                                   np.zeros((3, 2), np.float32), np.float64(0.5), np.int64(3)]))


def _paths(node, prefix=()):
    """Every place in a state dict: each key of each dict and each item of each list."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_corruption_of_a_state_dict_is_refused_cleanly_or_loaded_whole(data):
    """Replace any node of a valid state dict by junk, or drop it: load_state_dict either
    raises TypeError/ValueError with nothing changed, or loads, and the optimizer then equals
    one built from scratch and given the same dict."""
    opt, params = _adam()
    saved = opt.state_dict()
    paths = [p for p in _paths(saved) if p]
    path = data.draw(st.sampled_from(paths))
    parent = saved
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(_JUNK)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    before = _everything(opt)
    try:
        opt.load_state_dict(saved)
    except (TypeError, ValueError):
        assert _everything(opt) == before
        return
    twin = fo.Adam({k: v.copy() for k, v in params.items()}, lr=0.1, amsgrad=True)
    twin.load_state_dict(saved)
    grads = {"w": np.full((2, 3), 0.5, np.float32), "b": np.full(3, -0.5)}
    opt.step(grads)
    twin.step(grads)
    assert _everything(opt)[0] == _everything(twin)[0]


# ---- case 12: pickle and deepcopy ---------------------------------------------------------------
def _named(arrays):
    return {f"layer{i}": a for i, a in enumerate(arrays)}


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_a_copy_owns_its_arrays_and_steps_as_the_original(case, kwargs, how, rng):
    params, grads = make_problem(rng, [(5, 3), (1025,), ()], np.float32, 6)
    opt = case.cls(_named(params), **kwargs)
    for g in grads[:3]:
        opt.step(_named(g))
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    twin_params = [p for g in twin.param_groups for p in g["params"]]
    originals = [p for g in opt.param_groups for p in g["params"]]
    for a, b in zip(originals, twin_params):
        assert a is not b and not np.shares_memory(a, b) and a.tobytes() == b.tobytes()
    own = [a for slots in opt.state.values() for a in slots.values()]
    for a in (a for slots in twin.state.values() for a in slots.values()):
        assert not any(np.shares_memory(a, b) for b in own + originals)
    for g in grads[3:]:
        opt.step(_named(g))
        twin.step(_named(g))
    assert [a.tobytes() for a in originals] == [b.tobytes() for b in twin_params]
    assert pickle.dumps(opt.state_dict()) == pickle.dumps(twin.state_dict())


def test_deepcopy_with_the_model_shares_the_parameters():
    """copy.deepcopy((params, opt)) copies each array once: the copied optimizer updates the
    copied model, as torch's does."""
    params = {"w": np.zeros(4)}
    opt = fo.SGD(params, lr=1.0, momentum=0.5)
    params2, opt2 = copy.deepcopy((params, opt))
    opt2.step({"w": np.ones(4)})
    assert (params2["w"] == -1).all() and not params["w"].any()


@pytest.mark.parametrize("cls", [fo.distributed.DistributedOptimizer, fo.distributed.ZeroRedundancyOptimizer])
def test_distributed_optimizers_refuse_to_be_copied(cls):
    """They hold a communicator and their ranks step together: a copy would step alone. The
    refusal comes before anything is read, so an unbuilt instance (no MPI needed) shows it."""
    dist = cls.__new__(cls)
    for copier in (copy.deepcopy, pickle.dumps, copy.copy):
        with pytest.raises(TypeError, match=r"cannot be pickled or copied.*state_dict\(\)"):
            copier(dist)
