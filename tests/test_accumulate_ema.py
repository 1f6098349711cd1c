"""The training step in one sweep, part 2 (issue 20): gradients of None (frozen parameters),
gradient accumulation, and the EMA of the weights, on every rule; against torch, against a
float64 reference and against the plain step on summed gradients."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem, on_first_target_then
from registry import CASES

torch = pytest.importorskip("torch")

SHAPES = [(33,), (17, 9), (1025,)]
PARITY = [c for c in CASES if c.torch_name in ("Adam", "AdamW", "SGD", "RMSprop", "NAdam", "RAdam")]
TORCH_TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# torch keeps NAdam's mu_product in float32 even for float64 parameters (see test_torch_parity)
LOOSER = {("nadam", np.float64): dict(rtol=1e-8, atol=1e-9)}


def _bits(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x).view(np.uint8).tobytes()


def _same_tree(a, b, path="") -> None:
    assert type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))), path
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), path
        for k in a:
            _same_tree(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and _bits(a) == _bits(b), path
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def _snapshot(opt, params):
    return copy.deepcopy(([p.copy() for p in params], opt.state_dict()))


def _saved(opt):
    """The state dict of the optimizer that steps (Lookahead's inner one)."""
    saved = opt.state_dict()
    return saved["optimizer"] if isinstance(opt, fo.Lookahead) else saved


def _state_of(opt, name):
    return _saved(opt)["state"][name]


def _steps(opt):
    core = opt.optimizer if isinstance(opt, fo.Lookahead) else opt
    return [core.state_dict()["state"][name]["step"] for name in range(len(core.param_groups[0]["params"]))]


# ---- gradients of None ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", PARITY, ids=lambda c: c.name)
def test_none_gradients_are_torch_with_grad_none(case, dtype, seed):
    """20 steps where each parameter's gradient is None on random steps: torch skips such a
    parameter, state and step count included; so do we."""
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    params, grads = make_problem(rng, SHAPES, dtype, 20)
    absent = rng.random((20, len(SHAPES))) < 0.3
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, case.torch_name)(tparams, **kwargs)
    opt = case.cls(params, **kwargs)
    for step_grads, gone in zip(grads, absent):
        opt.step([None if off else g for g, off in zip(step_grads, gone)])
        for tp, g, off in zip(tparams, step_grads, gone):
            tp.grad = None if off else torch.from_numpy(g.copy())
        topt.step()
    tol = LOOSER.get((case.name, dtype), TORCH_TOL[dtype])
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)
    taken = [int((~gone).sum()) for gone in absent.T]
    assert _steps(opt) == taken
    for tp, steps in zip(tparams, taken):  # torch's own count, where it keeps one (not SGD's)
        if "step" in topt.state.get(tp, {}):
            assert int(topt.state[tp]["step"]) == steps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_rule_leaves_a_frozen_parameter_alone(case, dtype):
    """A parameter whose gradient is always None keeps its bits and its fresh state; the others
    step exactly as an optimizer that holds only them."""
    rng = np.random.default_rng(5)
    params, grads = make_problem(rng, SHAPES, dtype, 5)
    twin_params = [params[0].copy(), params[2].copy()]
    frozen = params[1].copy()
    opt = case.cls(params, **case.arg_sets[-1])
    twin = case.cls(twin_params, **case.arg_sets[-1])
    fresh = copy.deepcopy(_state_of(opt, 1))
    for g in grads:
        opt.step([g[0], None, g[2]])
        twin.step([g[0], g[2]])
    assert _bits(params[1]) == _bits(frozen)
    _same_tree(_state_of(opt, 1), fresh, "the frozen parameter's state")
    assert _bits(params[0]) == _bits(twin_params[0]) and _bits(params[2]) == _bits(twin_params[1])
    assert _steps(opt) == [5, 0, 5]


def test_a_step_of_nothing_but_none_changes_nothing():
    params, grads = make_problem(np.random.default_rng(1), SHAPES, np.float32, 1)
    opt = fo.AdamW(params, lr=0.1)
    opt.step(grads[0])
    before = _snapshot(opt, params)
    opt.step([None, None, None])
    opt.step({0: None, 1: None, 2: None})
    _same_tree(_snapshot(opt, params), before)


# ---- accumulation ---------------------------------------------------------------------------
def _summed(*batches, scales=None):
    """The float32/64 sum the buffers hold: zeros, plus each micro-batch (times 1/scale) in turn."""
    out = []
    for k in range(len(batches[0])):
        total = np.zeros_like(batches[0][k])
        for b, batch in enumerate(batches):
            g = batch[k]
            if scales is not None and scales[b] is not None:
                g = g * g.dtype.type(1.0 / scales[b])
            total = total + g
        out.append(total)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_accumulation_is_one_step_on_the_summed_gradients(case, dtype):
    """accumulate, accumulate, step(last) — and accumulate, step() — give the bits of one step on
    the sum, with and without loss scales, with and without clipping the sum."""
    rng = np.random.default_rng(7)
    params, grads = make_problem(rng, SHAPES, dtype, 9)
    twin_params = [p.copy() for p in params]
    for clip in (None, 20.0):
        opt = case.cls(params, max_grad_norm=clip, **case.arg_sets[-1])
        twin = case.cls(twin_params, max_grad_norm=clip, **case.arg_sets[-1])
        opt.accumulate(grads[0])
        opt.accumulate(grads[1], grad_scale=3.0)
        assert opt.pending == 2
        a = opt.step(grads[2], grad_scale=0.5)
        b = twin.step(_summed(grads[0], grads[1], grads[2], scales=[None, 3.0, 0.5]))
        assert a == b and opt.pending == 0
        opt.accumulate(grads[3])
        opt.accumulate(grads[4])
        assert opt.step() == twin.step(_summed(grads[3], grads[4]))
        opt.step(grads[5])  # nothing pending: the plain step
        twin.step(grads[5])
        _same_tree(_snapshot(opt, params), _snapshot(twin, twin_params))


def test_accumulation_with_none_gradients():
    """A parameter that got a gradient in any micro-batch steps on its sum; one that got none is
    left alone, as with a step of None."""
    rng = np.random.default_rng(3)
    params, grads = make_problem(rng, SHAPES, np.float32, 3)
    twin_params = [p.copy() for p in params]
    opt, twin = fo.Adam(params, lr=0.01), fo.Adam(twin_params, lr=0.01)
    opt.accumulate([grads[0][0], None, None])
    opt.accumulate([None, grads[1][1], None])
    opt.step([grads[2][0], None, None])  # the last batch with a None where a buffer holds a sum
    twin.step([grads[0][0] + grads[2][0], np.zeros_like(grads[1][1]) + grads[1][1], None])
    _same_tree(_snapshot(opt, params), _snapshot(twin, twin_params))
    assert _steps(opt) == [1, 1, 0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_skipped_step_discards_the_accumulated_gradients_only(case):
    rng = np.random.default_rng(11)
    params, grads = make_problem(rng, SHAPES, np.float32, 4)
    twin_params = [p.copy() for p in params]
    opt = case.cls(params, skip_nonfinite=True, ema_decay=0.9, **case.arg_sets[-1])
    twin = case.cls(twin_params, skip_nonfinite=True, ema_decay=0.9, **case.arg_sets[-1])
    opt.step(grads[0])
    twin.step(grads[0])
    before = _snapshot(opt, params)
    ema_before = copy.deepcopy(opt.ema)
    opt.accumulate(grads[1])
    poisoned = [g.copy() for g in grads[2]]
    poisoned[1][3] = np.inf
    assert opt.step(poisoned).skipped and opt.pending == 0
    _same_tree(_snapshot(opt, params), before)
    _same_tree(opt.ema, ema_before)
    opt.accumulate(grads[1])
    opt.accumulate(poisoned)  # accumulating a NaN is fine; the step that reads it is skipped
    assert opt.step().skipped
    _same_tree(_snapshot(opt, params), before)
    opt.step(grads[3])
    twin.step(grads[3])
    _same_tree(_snapshot(opt, params), _snapshot(twin, twin_params))
    _same_tree(opt.ema, twin.ema)


def test_accumulation_buffers_are_allocated_once():
    params, grads = make_problem(np.random.default_rng(0), SHAPES, np.float32, 2)
    opt = fo.SGD(params, lr=0.1)
    opt.accumulate(grads[0])
    buffers = list(opt._extras.accumulated.values())
    for _ in range(3):
        opt.accumulate(grads[1])
        opt.step(grads[0])
    assert all(a is b for a, b in zip(buffers, opt._extras.accumulated.values()))
    assert all(not b.any() for b in buffers)  # the step's sweep cleared them


# ---- the EMA ----------------------------------------------------------------------------------
@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_ema_is_the_float64_reference(case, dtype, warmup):
    """ema ← d·ema + (1 − d)·p after each step, d = decay or min(decay, (1 + t)/(10 + t)), from a
    copy of the parameters; skipped steps leave it and its count alone."""
    rng = np.random.default_rng(13)
    params, grads = make_problem(rng, SHAPES, dtype, 12)
    decay = 0.95
    opt = case.cls(params, ema_decay=decay, ema_warmup=warmup, skip_nonfinite=True, **case.arg_sets[-1])
    ema = [p.astype(np.float64) for p in params]
    t = 0
    for k, step_grads in enumerate(grads):
        if k == 5:
            bad = [g.copy() for g in step_grads]
            bad[0][0] = np.nan
            assert opt.step(bad).skipped
        opt.step(step_grads)
        t += 1
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        ema = [d * e + (1 - d) * p.astype(np.float64) for e, p in zip(ema, params)]
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    for name, want in enumerate(ema):
        np.testing.assert_allclose(opt.ema[name], want, **tol)
    assert _saved(opt)["ema"]["updates"] == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ema_is_torch_get_ema_multi_avg_fn(dtype):
    """torch.optim.swa_utils' EMA (torch._foreach_lerp_ with weight 1 − decay), step by step."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    rng = np.random.default_rng(2)
    params, grads = make_problem(rng, SHAPES, dtype, 10)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.AdamW(tparams, lr=0.01)
    tema = [p.detach().clone() for p in tparams]
    average = get_ema_multi_avg_fn(0.9)
    opt = fo.AdamW(params, lr=0.01, ema_decay=0.9)
    for step_grads in grads:
        opt.step(step_grads)
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        average(tema, [tp.detach() for tp in tparams], None)
    for name, te in enumerate(tema):
        np.testing.assert_allclose(opt.ema[name], te.numpy(), **TORCH_TOL[dtype])


def test_ema_averages_frozen_parameters_too():
    """A parameter left out of a step (gradient None) is averaged with the others, in the same
    formula (here it stops moving, so its EMA closes in on it)."""
    params, grads = make_problem(np.random.default_rng(4), SHAPES, np.float32, 6)
    opt = fo.SGD(params, lr=0.5, ema_decay=0.7)
    ema = [p.copy() for p in params]
    w = np.float32(1 - 0.7)
    for k, g in enumerate(grads):
        opt.step([g[0], None if k >= 3 else g[1], g[2]])
        for e, p in zip(ema, params):
            e += w * (p - e)  # torch's lerp for weights below 1/2, in float32: the same bits
    for name, want in enumerate(ema):
        assert _bits(opt.ema[name]) == _bits(want), name


def test_lookahead_ema_follows_the_arrays_the_user_holds():
    params, grads = make_problem(np.random.default_rng(6), SHAPES, np.float32, 7)
    opt = fo.Lookahead(fo.SGD(params, lr=0.3, momentum=0.9, ema_decay=0.8), k=3, alpha=0.5)
    ema = [p.copy() for p in params]
    w = np.float32(1 - 0.8)
    for g in grads:
        opt.step(g)
        for e, p in zip(ema, params):  # after the step, synchronised or not
            e += w * (p - e)
    for name, want in enumerate(ema):
        assert _bits(opt.ema[name]) == _bits(want), name


def test_swap_ema_swaps_in_place_and_back_on_any_exit():
    params, grads = make_problem(np.random.default_rng(8), SHAPES, np.float32, 3)
    held = list(params)
    opt = fo.Adam(params, lr=0.05, ema_decay=0.5)
    for g in grads:
        opt.step(g)
    weights = [p.copy() for p in params]
    ema = {k: v.copy() for k, v in opt.ema.items()}
    with opt.swap_ema():
        assert all(a is b for a, b in zip(params, held))
        for name, p in enumerate(params):
            assert _bits(p) == _bits(ema[name])
        with pytest.raises(RuntimeError, match="inside swap_ema"):
            opt.step(grads[0])
        with pytest.raises(RuntimeError, match="inside swap_ema"):
            opt.accumulate(grads[0])
        with pytest.raises(RuntimeError, match="do not nest"):
            with opt.swap_ema():
                pass
    for p, w in zip(params, weights):
        assert _bits(p) == _bits(w)
    with pytest.raises(KeyError):
        with opt.swap_ema():
            raise KeyError("evaluation failed")
    for p, w in zip(params, weights):
        assert _bits(p) == _bits(w)
    _same_tree(opt.ema, ema)
    opt.step(grads[0])  # stepping works again
    look = fo.Lookahead(fo.SGD([p.copy() for p in params], lr=0.1, ema_decay=0.9), k=2)
    saved = look.state_dict()
    with look.swap_ema():
        with pytest.raises(RuntimeError, match="load_state_dict is refused inside swap_ema"):
            look.load_state_dict(saved)
    with pytest.raises(ValueError, match="construct the SGD with ema_decay"):
        with fo.SGD([np.zeros(3)], lr=0.1).swap_ema():
            pass


# ---- checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_resume_is_exact_with_pending_accumulation_and_ema(case):
    rng = np.random.default_rng(17)
    params, grads = make_problem(rng, SHAPES, np.float32, 6)
    kwargs = dict(ema_decay=0.9, ema_warmup=True, **case.arg_sets[-1])
    opt = case.cls(params, **kwargs)
    opt.step(grads[0])
    opt.step([grads[1][0], None, grads[1][2]])
    opt.accumulate([None, grads[2][1], grads[2][2]])
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    inner = _saved(opt)
    assert inner["accumulated"]["micro_batches"] == 1 and set(inner["accumulated"]["arrays"]) == {1, 2}
    copied = copy.deepcopy(opt)
    resumed_params = [p.copy() for p in params]
    resumed = case.cls(resumed_params, **kwargs)
    resumed.load_state_dict(saved)
    for other in (resumed, copied):
        assert other.pending == 1
        for g in grads[3:]:
            other.step(g)
    for g in grads[3:]:
        opt.step(g)
    copied_params = copied.param_groups[0]["params"]  # the copy's own arrays
    for other, other_params in ((resumed, resumed_params), (copied, copied_params)):
        _same_tree(_snapshot(other, other_params), _snapshot(opt, params))
        _same_tree(other.ema, opt.ema)


def test_a_state_dict_without_ema_restarts_it_from_the_parameters():
    """0.1.0's state dicts have no 'ema' and no 'accumulated': they load, the EMA starting anew."""
    params, grads = make_problem(np.random.default_rng(9), SHAPES, np.float32, 3)
    plain = fo.Adam([p.copy() for p in params], lr=0.01)
    plain.step(grads[0])
    saved = plain.state_dict()
    assert set(saved) == {"state", "param_groups"}
    opt = fo.Adam(params, lr=0.01, ema_decay=0.9)
    opt.step(grads[1])
    opt.accumulate(grads[2])
    opt.load_state_dict(saved)
    assert opt.pending == 0 and opt.state_dict()["ema"]["updates"] == 0
    for name, p in enumerate(params):
        assert _bits(opt.ema[name]) == _bits(p)


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "error", "text"), [
    (-0.1, ValueError, "ema_decay"), (1.5, ValueError, "ema_decay"), (math.nan, ValueError, "ema_decay"),
    ("0.9", TypeError, "ema_decay"), (True, TypeError, "ema_decay")])
def test_bad_ema_decay(value, error, text):
    with pytest.raises(error, match=text):
        fo.Adam([np.zeros(3)], ema_decay=value)


def test_bad_ema_warmup_and_options():
    with pytest.raises(ValueError, match="ema_warmup=True needs ema_decay"):
        fo.SGD([np.zeros(3)], lr=0.1, ema_warmup=True)
    with pytest.raises(TypeError, match="ema_warmup"):
        fo.SGD([np.zeros(3)], lr=0.1, ema_decay=0.9, ema_warmup="yes")


def test_refused_steps_and_accumulations_change_nothing():
    params, grads = make_problem(np.random.default_rng(10), SHAPES, np.float32, 2)
    opt = fo.AdamW(params, lr=0.01, ema_decay=0.9)
    opt.step(grads[0])
    before = _snapshot(opt, params)
    with pytest.raises(ValueError, match="none were accumulated"):
        opt.step()
    with pytest.raises(ValueError, match="grad_scale applies to the gradients"):
        opt.step(None, grad_scale=2.0)
    with pytest.raises(TypeError, match=r"grads\[0\]"):  # refused before the buffers are allocated
        opt.accumulate([grads[1][0].astype(np.float64), grads[1][1], grads[1][2]])
    assert opt._extras.accumulated is None
    _same_tree(_snapshot(opt, params), before)
    opt.accumulate(grads[1])
    pending = _snapshot(opt, params)
    wrong = [grads[1][0].astype(np.float64), grads[1][1], grads[1][2]]
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        opt.accumulate(wrong)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        opt.accumulate([grads[1][0], grads[1][1][:4], grads[1][2]])
    with pytest.raises(ValueError, match="grads has 2 arrays"):
        opt.accumulate(grads[1][:2])
    with pytest.raises(ValueError, match="grad_scale"):
        opt.accumulate(grads[1], grad_scale=-1.0)
    with pytest.raises(ValueError, match="shares memory"):
        opt.accumulate([opt._extras.accumulated[0], grads[1][1], grads[1][2]])
    _same_tree(_snapshot(opt, params), pending)
    assert opt.pending == 1
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        opt.step(wrong)  # refused with a pending sum: the sum stays
    _same_tree(_snapshot(opt, params), pending)
    del before


def test_bad_saved_ema_and_accumulation_change_nothing():
    params, grads = make_problem(np.random.default_rng(12), SHAPES, np.float32, 2)
    opt = fo.Adam(params, lr=0.01, ema_decay=0.9)
    opt.step(grads[0])
    opt.accumulate(grads[1])
    good = opt.state_dict()
    before = _snapshot(opt, params)
    ema_before = copy.deepcopy(opt.ema)
    bad_cases = [
        ({**good, "ema": {"updates": -1, "arrays": good["ema"]["arrays"]}}, ValueError, "updates"),
        ({**good, "ema": {"updates": 1, "arrays": {0: good["ema"]["arrays"][0]}}}, ValueError, "one array per"),
        ({**good, "ema": {"updates": 1, "arrays": {**good["ema"]["arrays"], 0: np.zeros(3)}}}, TypeError, "dtype"),
        ({**good, "ema": [1, 2]}, TypeError, "'ema'"),
        ({**good, "accumulated": {"micro_batches": 0, "arrays": {}}}, ValueError, "micro_batches"),
        ({**good, "accumulated": {"micro_batches": 1, "arrays": {7: np.zeros(3)}}}, ValueError, "not a parameter"),
    ]
    for state_dict, error, text in bad_cases:
        with pytest.raises(error, match=text):
            opt.load_state_dict(state_dict)
        _same_tree(_snapshot(opt, params), before)
        _same_tree(opt.ema, ema_before)
    with pytest.raises(ValueError, match="keeps none"):
        fo.Adam([p.copy() for p in params], lr=0.01).load_state_dict(good)


# ---- the same bits everywhere --------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", fo.available_targets())
@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_accumulation_ema_and_frozen_same_bits_on_every_target(name, target, threads, restore_runtime):
    case = next(c for c in CASES if c.name == name)

    def run():
        rng = np.random.default_rng(21)
        params, grads = make_problem(rng, [(10**6 + 3,), (1000, 33), (77,)], np.float32, 4)
        opt = case.cls(params, max_grad_norm=100.0, ema_decay=0.99, ema_warmup=True, **case.arg_sets[-1])
        opt.accumulate(grads[0], grad_scale=3.0)
        opt.step(grads[1])
        opt.accumulate([grads[2][0], None, grads[2][2]])
        opt.step()
        opt.step([None, grads[3][1], grads[3][2]])
        return params, list(opt.ema.values())

    want, got = on_first_target_then(target, threads, run)
    for a, b in zip(want[0] + want[1], got[0] + got[1]):
        assert _bits(a) == _bits(b)
