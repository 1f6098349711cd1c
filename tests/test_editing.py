"""What users may edit between steps (issue 15's contract, stated in optimizer.py and the README).

Honoured: hyper-parameters, add_param_group, a state array replaced by a fit one. Refused at
the next step, with nothing changed: edits of a group's arrays or of the group list, unfit or
unknown state entries. The two views (what ``state`` shows, what the step uses) never disagree.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem
from registry import ARG_CASES, arg_id

SHAPES = [(5, 3), (1025,), ()]


def _named(arrays):
    return {f"layer{i}": a for i, a in enumerate(arrays)}


def _inner(opt):
    return opt.optimizer if isinstance(opt, fo.Lookahead) else opt


def _frozen(opt) -> list:
    """The bytes of every array the plan holds, and its clocks."""
    core = _inner(opt)
    held = core._held
    return ([a.tobytes() for ps in held.params for a in ps]
            + [(n, s, a.tobytes()) for n, slots in held.states.items() for s, a in sorted(slots.items())]
            + [core._clocks()])


def _keeps_state(case, kwargs) -> bool:
    opt = _inner(case.cls([np.zeros(2)], **kwargs))
    return len(opt.state[0]) > 0


STATEFUL = [(case, kwargs) for case, kwargs in ARG_CASES if _keeps_state(case, kwargs)]


@pytest.mark.parametrize(("case", "kwargs"), STATEFUL, ids=arg_id)
def test_a_replaced_state_array_is_the_one_the_next_step_updates(case, kwargs, rng):
    """torch's idiom for resetting a moment: opt.state[k][slot] = new array. The next step
    uses the new array in place, and matches an optimizer loaded with that state."""
    params, grads = make_problem(rng, SHAPES, np.float32, 4)
    opt = case.cls(_named(params), **kwargs)
    for g in grads[:2]:
        opt.step(_named(g))
    core = _inner(opt)
    replacements = {}
    for name, slots in core.state.items():
        for slot, old in list(slots.items()):
            new = np.empty_like(old)  # same dtype, shape and memory order
            new[...] = rng.uniform(0.1, 1.0, old.shape)  # positive: fits every moment
            slots[slot] = new
            replacements[name, slot] = new
    twin = case.cls(_named([p.copy() for p in params]), **kwargs)
    twin.load_state_dict(opt.state_dict())
    assert all(core.state[n][s] is a for (n, s), a in replacements.items())
    opt.step(_named(grads[2]))
    twin.step(_named(grads[2]))
    assert all(core.state[n][s] is a for (n, s), a in replacements.items()), "the replacement was swapped out"
    assert _frozen(opt)[:-1] == _frozen(twin)[:-1]


def _adam():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(4.0)
    return fo.Adam({"w": w, "b": b}, lr=0.1), w, b


def _grads():
    return {"w": np.ones((3, 4), np.float32), "b": np.ones(4)}


def _bad_state_edits():
    def read_only(o):
        a = np.zeros((3, 4), np.float32)
        a.flags.writeable = False
        return a

    return [
        ("wrong dtype", lambda o: o.state["w"].__setitem__("exp_avg", np.zeros((3, 4))), TypeError,
         r"state\['w'\]\['exp_avg'\] has dtype float64; its parameter is float32"),
        ("wrong shape", lambda o: o.state["w"].__setitem__("exp_avg", np.zeros(12, np.float32)), ValueError,
         r"has shape \(12,\); its parameter has shape \(3, 4\)"),
        ("wrong order", lambda o: o.state["w"].__setitem__("exp_avg", np.zeros((3, 4), np.float32, order="F")),
         ValueError, r"is not in its parameter.s memory order \(C-contiguous expected\)"),
        ("strided", lambda o: o.state["w"].__setitem__("exp_avg", np.zeros((3, 8), np.float32)[:, ::2]), ValueError,
         r"is not contiguous \(C-contiguous expected\)"),
        ("read-only", lambda o: o.state["w"].__setitem__("exp_avg", read_only(o)), ValueError, "is read-only"),
        ("not an array", lambda o: o.state["w"].__setitem__("exp_avg", [0.0] * 12), TypeError,
         "must be a numpy.ndarray, got list"),
        ("the parameter itself", lambda o: o.state["w"].__setitem__("exp_avg", o.param_groups[0]["params"][0]),
         ValueError, r"state\['w'\]\['exp_avg'\] is the same array as params\['w'\]"),
        ("another state array", lambda o: o.state["w"].__setitem__("exp_avg", o.state["w"]["exp_avg_sq"]),
         ValueError, "is the same array as state"),
        ("a view of the parameter", lambda o: o.state["w"].__setitem__("exp_avg", o.param_groups[0]["params"][0][:]),
         ValueError, "share memory"),
        ("an unknown slot", lambda o: o.state["w"].__setitem__("momentum", np.zeros((3, 4), np.float32)),
         ValueError, r"state\['w'\] has 'momentum'; Adam keeps"),
        ("a needed slot deleted", lambda o: o.state["w"].__delitem__("exp_avg_sq"), ValueError,
         r"lacks 'exp_avg_sq', which the next step needs; to reset it, assign zeros"),
        ("an entry for no parameter", lambda o: o.state.__setitem__("z", {}), ValueError,
         "state has an entry for 'z', which is not a parameter"),
        ("an entry that is not a dict", lambda o: o.state.__setitem__("w", 3), TypeError,
         r"state\['w'\] must be a dict of state arrays, got int"),
        ("a whole table replaced badly", lambda o: setattr(o, "state", {"w": {}}), ValueError,
         r"state\['w'\] lacks 'exp_avg'"),
    ]


@pytest.mark.parametrize(("what", "edit", "error", "message"), _bad_state_edits(),
                         ids=[e[0] for e in _bad_state_edits()])
def test_an_unfit_state_edit_is_refused_until_undone(what, edit, error, message):
    opt, w, b = _adam()
    opt.step(_grads())
    saved = {name: dict(slots) for name, slots in opt.state.items()}
    before = _frozen(opt)
    edit(opt)
    for call in (lambda: opt.step(_grads()), opt.state_dict, lambda: opt.add_param_group({"params": [np.zeros(2)]})):
        with pytest.raises(error, match=message):
            call()
        assert _frozen(opt) == before and len(opt.param_groups) == 1
    opt.state = saved  # put back the arrays the optimizer holds: it steps again
    opt.step(_grads())
    assert opt.state_dict()["state"]["w"]["step"] == 2


def _bad_structure_edits():
    other = np.zeros((3, 4), np.float32)
    return [
        ("params entry replaced", lambda o: o.param_groups[0]["params"].__setitem__(0, other),
         r"param_groups\[0\]\['params'\] was changed"),
        ("params appended", lambda o: o.param_groups[0]["params"].append(other), r"\['params'\] was changed"),
        ("params entry deleted", lambda o: o.param_groups[0]["params"].pop(), r"\['params'\] was changed"),
        ("params reordered", lambda o: o.param_groups[0]["params"].reverse(), r"\['params'\] was changed"),
        ("params list replaced", lambda o: o.param_groups[0].__setitem__("params", [other, np.zeros(4)]),
         r"\['params'\] was changed"),
        ("params key deleted", lambda o: o.param_groups[0].pop("params"), r"\['params'\] was changed"),
        ("a name changed", lambda o: o.param_groups[0]["param_names"].__setitem__(0, "z"),
         r"\['param_names'\] was changed"),
        ("a group appended", lambda o: o.param_groups.append({"params": [other], "lr": 0.1}),
         "param_groups was changed; groups are added with add_param_group"),
        ("the group removed", lambda o: o.param_groups.clear(), "param_groups was changed"),
        ("the group list replaced", lambda o: setattr(o, "param_groups", [dict(o.param_groups[0])]),
         "param_groups was changed"),
    ]


@pytest.mark.parametrize(("what", "edit", "message"), _bad_structure_edits(),
                         ids=[e[0] for e in _bad_structure_edits()])
def test_an_edit_of_the_arrays_of_a_group_is_refused_with_nothing_changed(what, edit, message):
    opt, w, b = _adam()
    opt.step(_grads())
    before = _frozen(opt)
    edit(opt)
    for call in (lambda: opt.step(_grads()), opt.state_dict, lambda: opt.add_param_group({"params": [np.zeros(2)]}),
                 lambda: opt.load_state_dict(pickle.loads(pickle.dumps(_adam()[0].state_dict())))):
        with pytest.raises(ValueError, match=message):
            call()
        assert _frozen(opt) == before


def test_an_equal_list_of_the_same_arrays_is_accepted_and_tracked():
    opt, w, b = _adam()
    group = opt.param_groups[0]
    group["params"] = [w, b]  # the same arrays in a new list
    opt.step(_grads())
    group["params"].append(np.zeros(2))  # the new list is watched too
    with pytest.raises(ValueError, match="was changed"):
        opt.step(_grads())


def test_a_slot_the_settings_no_longer_need_may_be_dropped():
    p = np.zeros(5)
    opt = fo.Adam([p], lr=0.1, amsgrad=True)
    opt.step([np.ones(5)])
    opt.param_groups[0]["amsgrad"] = False
    del opt.state[0]["max_exp_avg_sq"]  # frees it: amsgrad is off
    opt.step([np.ones(5)])
    assert set(opt.state[0]) == {"exp_avg", "exp_avg_sq"}
    opt.param_groups[0]["amsgrad"] = True  # needed again: allocated anew
    opt.step([np.ones(5)])
    assert set(opt.state[0]) == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_momentum_switched_on_then_saved_resumes_bit_identically(dampening, rng):
    """A buffer allocated by an edit is seeded from the next gradient (torch's lazy buffer). A
    state dict taken before that step leaves the buffer out, so a resumed run seeds it too."""
    params, grads = make_problem(rng, SHAPES, np.float64, 5)
    opt = fo.SGD(_named(params), lr=0.1)
    opt.step(_named(grads[0]))
    opt.param_groups[0].update(momentum=0.9, dampening=dampening)
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    resumed = [p.copy() for p in params]
    assert all("momentum_buffer" not in entry for entry in saved["state"].values())
    for g in grads[1:]:
        opt.step(_named(g))
    twin = fo.SGD(_named(resumed), lr=0.1, momentum=0.9, dampening=dampening)
    twin.load_state_dict(saved)
    for g in grads[1:]:
        twin.step(_named(g))
    assert [p.tobytes() for p in params] == [p.tobytes() for p in resumed]


def test_lookahead_slow_weights_may_be_replaced_and_its_state_view_is_read_only():
    p = np.zeros(6)
    opt = fo.Lookahead(fo.SGD([p], lr=1.0), k=1, alpha=0.5)
    opt.slow[0] = np.full(6, 4.0)  # honoured at the next synchronisation
    opt.step([np.ones(6)])  # p = -1, then slow = 4 + 0.5 * (-1 - 4) = 1.5, p = 1.5
    assert (p == 1.5).all() and (opt.slow[0] == 1.5).all()
    with pytest.raises(TypeError, match="read-only view"):
        opt.state[0] = {}
    with pytest.raises(TypeError, match="read-only view"):
        opt.state[0]["slow"] = np.zeros(6)
    opt.slow[0] = np.zeros(5)
    with pytest.raises(ValueError, match=r"slow\[0\] has shape \(5,\)"):
        opt.step([np.ones(6)])
    assert (p == 1.5).all()
