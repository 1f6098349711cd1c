"""Adafactor and Muon, the rules that see a whole matrix at once: against their float64
references (reference.adafactor, reference.muon), against torch 2.13 (torch.optim.Adafactor; for
Muon, torch's algorithm in the parameter's dtype, written here with torch's own ops, and
torch.optim.Muon as shipped, whose Newton–Schulz runs in bfloat16), torch's configurations for
Muon from its optimizer database (Adafactor's run in test_torch_optimizer_info.py), convergence,
checkpoints, refusals, split_for_muon and MuonWithAdamW, and the gradient options of the step.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import fastoptim as fo
import reference
from problems import make_problem, state_tolerance

DTYPES = [np.float32, np.float64]
# beside torch (test_oracle_parity.py's tolerances: torch's norms and reductions sum in another
# order than ours, 1e-16 apart, which Adafactor's normalizations and Muon's iteration carry on)
TORCH_TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
# beside the float64 references: float64 tightly; float32 loosely (its own rounding, 20 steps)
REF_TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
NORM_RTOL = {np.float32: 1e-5, np.float64: 1e-12}

ADAFACTOR_DEFAULTS = dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False)
MUON_DEFAULTS = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=(3.4445, -4.775, 2.0315),
                     eps=1e-7, ns_steps=5, adjust_lr_fn=None)

# every rank Adafactor factors or not: vectors, a scalar, matrices (one row, one column), batches
ADAFACTOR_SHAPES = [(33,), (), (17, 9), (1, 7), (9, 1), (3, 4, 5), (2, 3, 4, 5), (1025,)]
# tall (Newton–Schulz on the transpose), wide, square, a row, a column
MUON_SHAPES = [(16, 8), (5, 12), (7, 7), (1, 9), (9, 1)]


def _torch():
    return pytest.importorskip("torch")


def _named(arrays):
    return {f"p{i}": a for i, a in enumerate(arrays)}


def _step_all(opt, grads):
    for step_grads in grads:
        opt.step(_named(step_grads))


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _adafactor_hyper(kwargs, dtype):
    """The reference's hyper-parameters: the defaults under kwargs, eps1 None resolved to the
    parameter dtype's epsilon (torch: torch.finfo(param.dtype).eps)."""
    hp = {**ADAFACTOR_DEFAULTS, **kwargs}
    eps1, eps2 = hp["eps"]
    hp["eps"] = (float(np.finfo(dtype).eps) if eps1 is None else eps1, eps2)
    return hp


def _random_adafactor(rng):
    """lr up to 1, so that rho_t = min(lr, 1/sqrt(t)) is lr's for some steps and 1/sqrt(t)'s after."""
    return dict(lr=10 ** _u(rng, -2.5, 0), beta2_decay=_u(rng, -1.0, -0.3),
                eps=([None, 10 ** _u(rng, -8, -3)][rng.integers(2)], [1e-3, _u(rng, 0, 1e-2)][rng.integers(2)]),
                d=[1.0, _u(rng, 1, 3)][rng.integers(2)], weight_decay=[0.0, _u(rng, 1e-4, 0.1)][rng.integers(2)],
                maximize=bool(rng.integers(2)))


def _random_muon(rng):
    return dict(lr=10 ** _u(rng, -3, -1), weight_decay=[0.0, _u(rng, 1e-3, 0.2)][rng.integers(2)],
                momentum=_u(rng, 0.5, 0.99), nesterov=bool(rng.integers(2)),
                adjust_lr_fn=[None, "original", "match_rms_adamw"][rng.integers(3)], ns_steps=int(rng.integers(1, 8)))


def _problem(rng, shapes, dtype, steps, grad_scale=1.0, param_scale=1.0):
    params, grads = make_problem(rng, shapes, dtype, steps)
    params = [np.asarray(p * param_scale, dtype) for p in params]
    grads = [[np.asarray(g * grad_scale, dtype) for g in gs] for gs in grads]
    return params, grads


# ---- Adafactor against its float64 reference ------------------------------------------------------
ADAFACTOR_ARGS = [
    dict(),
    dict(lr=0.5, weight_decay=0.05),  # rho_t = lr for t < 4, 1/sqrt(t) from t = 4
    dict(lr=0.3, beta2_decay=-0.5, d=1.5, maximize=True),
    dict(lr=0.05, eps=(1e-6, 0.0), d=2.0, weight_decay=0.1),
    dict(eps=(0.0, 1e-3), beta2_decay=-1.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", ADAFACTOR_ARGS, ids=str)
def test_adafactor_matches_reference(kwargs, dtype, rng):
    params, grads = make_problem(rng, ADAFACTOR_SHAPES, dtype, 20)
    want, want_state = reference.run(reference.adafactor, params, grads, _adafactor_hyper(kwargs, dtype))
    opt = fo.Adafactor(_named(params), **kwargs)
    _step_all(opt, grads)
    saved = opt.state_dict()["state"]
    for i, (p, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(p, w, **REF_TOL[dtype], err_msg=f"p{i} {p.shape}")
        assert saved[f"p{i}"]["step"] == 20
        for slot, value in want_state[i].items():
            got = opt.state[f"p{i}"][slot]
            assert got.shape == value.shape and got.dtype == dtype, (slot, got.shape, got.dtype)
            np.testing.assert_allclose(got, value, **state_tolerance(dtype, value), err_msg=f"{slot} of p{i}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adafactor_epsilons_bite(dtype, rng):
    """Small gradients and parameters, where eps1 clamps mean(R) and V and eps2 sets alpha; a
    parameter of zeros moves by eps2·rho_t."""
    kwargs = dict(lr=0.2, eps=(1e-3, 1e-2), weight_decay=0.01)
    params, grads = _problem(rng, [(17, 9), (33,), (3, 4, 5)], dtype, 20, grad_scale=1e-4, param_scale=1e-4)
    params.append(np.zeros(6, dtype))
    for gs in grads:
        gs.append(np.asarray(1e-4 * rng.standard_normal(6), dtype))
    want, _ = reference.run(reference.adafactor, params, grads, _adafactor_hyper(kwargs, dtype))
    opt = fo.Adafactor(_named(params), **kwargs)
    _step_all(opt, grads)
    for i, (p, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(p, w, rtol=REF_TOL[dtype]["rtol"], atol=1e-4 * REF_TOL[dtype]["atol"],
                                   err_msg=f"p{i}")


def test_adafactor_state_layout():
    """row_var [..., R, 1] and col_var [..., 1, C] for two or more dimensions, variance like the
    parameter for one or none; the step an int, per parameter."""
    params = {"v": np.zeros(5, np.float32), "s": np.zeros((), np.float32), "m": np.zeros((4, 6)),
              "b": np.zeros((2, 3, 4, 5), np.float32)}
    opt = fo.Adafactor(params)
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt.step(grads)
    opt.step({**grads, "s": None})
    shapes = {k: {s: (a.shape, a.dtype) for s, a in st.items() if s != "step"} for k, st in opt.state.items()}
    assert shapes == {"v": {"variance": ((5,), np.float32)}, "s": {"variance": ((), np.float32)},
                      "m": {"row_var": ((4, 1), np.float64), "col_var": ((1, 6), np.float64)},
                      "b": {"row_var": ((2, 3, 4, 1), np.float32), "col_var": ((2, 3, 1, 5), np.float32)}}
    saved = opt.state_dict()["state"]
    assert {k: saved[k]["step"] for k in saved} == {"v": 2, "s": 1, "m": 2, "b": 2}
    assert all(type(saved[k]["step"]) is int for k in saved)


# ---- Adafactor against torch.optim.Adafactor --------------------------------------------------------
def _torch_adafactor(params, grads, kwargs, skip=None, lr_at=None):
    """torch's Adafactor after the steps of grads; skip(t, i): parameter i has no gradient at
    step t; lr_at(t): the lr set before step t (a scheduler's edit)."""
    torch = _torch()
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Adafactor(tparams, **kwargs)
    for t, step_grads in enumerate(grads):
        if lr_at is not None:
            topt.param_groups[0]["lr"] = lr_at(t)
        for i, (tp, g) in enumerate(zip(tparams, step_grads)):
            tp.grad = None if skip is not None and skip(t, i) else torch.from_numpy(g.copy())
        topt.step()
    return topt, tparams


def _assert_like_torch_adafactor(opt, topt, params, tparams, dtype, what=""):
    saved = opt.state_dict()["state"]
    for i, (p, tp) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(p, tp.detach().numpy(), **TORCH_TOL[dtype], err_msg=f"p{i} {p.shape} {what}")
        for slot, value in topt.state[tp].items():
            if slot == "step":
                assert saved[f"p{i}"]["step"] == int(value), f"step of p{i}"
            else:
                np.testing.assert_allclose(opt.state[f"p{i}"][slot], value.numpy(), **TORCH_TOL[dtype],
                                           err_msg=f"{slot} of p{i} {what}")


# (kwargs, gradient scale, parameter scale): the fixed settings, then random ones
ADAFACTOR_TORCH = [(a, 1.0, 1.0) for a in ADAFACTOR_ARGS] + [
    (dict(lr=0.9, eps=(1e-3, 1e-2), weight_decay=0.01), 1e-4, 1e-4),  # every epsilon clamps
    *[(_random_adafactor(np.random.default_rng(seed)), 1.0, 1.0) for seed in range(4)],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kwargs", "grad_scale", "param_scale"), ADAFACTOR_TORCH, ids=str)
def test_adafactor_matches_torch(kwargs, grad_scale, param_scale, dtype, rng):
    params, grads = _problem(rng, ADAFACTOR_SHAPES[:-1], dtype, 20, grad_scale, param_scale)
    params.append(np.zeros(10, dtype))  # a bias at zero: alpha = eps2·rho_t
    for gs in grads:
        gs.append(np.asarray(grad_scale * rng.standard_normal(10), dtype))
    topt, tparams = _torch_adafactor(params, grads, kwargs)
    opt = fo.Adafactor(_named(params), **kwargs)
    _step_all(opt, grads)
    _assert_like_torch_adafactor(opt, topt, params, tparams, dtype, str(kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adafactor_counts_steps_per_parameter_as_torch(dtype, rng):
    """A parameter without a gradient keeps its step count (torch's state["step"] is per
    parameter), so its beta2_t and rho_t lag the others'; the lr edited between steps applies."""
    kwargs = dict(lr=0.6, weight_decay=0.02)
    params, grads = make_problem(rng, [(12, 5), (20,), (2, 3, 4)], dtype, 15)
    skip = lambda t, i: (i == 0 and t in (2, 3, 9)) or (i == 2 and t < 4)  # noqa: E731
    lr_at = lambda t: 0.6 * 0.8 ** t  # noqa: E731
    topt, tparams = _torch_adafactor(params, grads, kwargs, skip, lr_at)
    opt = fo.Adafactor(_named(params), **kwargs)
    for t, step_grads in enumerate(grads):
        opt.param_groups[0]["lr"] = lr_at(t)
        opt.step({f"p{i}": None if skip(t, i) else g for i, g in enumerate(step_grads)})
    _assert_like_torch_adafactor(opt, topt, params, tparams, dtype)
    assert [opt.state_dict()["state"][f"p{i}"]["step"] for i in range(3)] == [12, 15, 11]


# ---- Muon: torch's algorithm in the parameter's dtype -------------------------------------------
def _torch_muon(params, grads, kwargs):
    """torch.optim.Muon's _single_tensor_muon with torch's ops, its Newton–Schulz without the
    cast to bfloat16 (in the parameter's dtype, as fastoptim's): the parameters and the momentum
    buffers after the steps of grads."""
    torch = _torch()
    hp = {**MUON_DEFAULTS, **kwargs}
    lr, wd, momentum = hp["lr"], hp["weight_decay"], hp["momentum"]
    a, b, c = hp["ns_coefficients"]
    tparams = [torch.tensor(p.copy()) for p in params]
    bufs = [torch.zeros_like(p) for p in tparams]
    for step_grads in grads:
        for param, g, buf in zip(tparams, step_grads, bufs):
            grad = torch.from_numpy(g.copy())
            buf.lerp_(grad, 1 - momentum)
            update = grad.lerp(buf, momentum) if hp["nesterov"] else buf
            ortho = update.T if update.size(0) > update.size(1) else update
            ortho = ortho / ortho.norm().clamp(min=hp["eps"])
            for _ in range(hp["ns_steps"]):
                gram = ortho @ ortho.T
                gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
                ortho = torch.addmm(ortho, gram_update, ortho, beta=a)
            if update.size(0) > update.size(1):
                ortho = ortho.T
            rows, cols = param.shape[:2]
            if hp["adjust_lr_fn"] in (None, "original"):
                ratio = math.sqrt(max(1, rows / cols))
            else:
                ratio = 0.2 * math.sqrt(max(rows, cols))
            param.mul_(1 - lr * wd)
            param.add_(ortho, alpha=-lr * ratio)
    return [p.numpy() for p in tparams], [b.numpy() for b in bufs]


MUON_ARGS = [
    dict(lr=0.02),
    dict(lr=0.02, nesterov=False),
    dict(lr=0.02, adjust_lr_fn="original", momentum=0.8, weight_decay=0.0),
    dict(lr=0.05, adjust_lr_fn="match_rms_adamw", nesterov=False, weight_decay=0.2),
    dict(lr=0.02, adjust_lr_fn="match_rms_adamw", ns_steps=3),
    dict(lr=0.01, ns_steps=1, nesterov=False),
    dict(lr=0.01, ns_steps=10, ns_coefficients=(3.4, -4.7, 2.0), eps=1e-5),
    dict(lr=0.02, ns_steps=6, ns_coefficients=(2.0, -1.5, 0.5)),  # a convergent cubic-like iteration
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", MUON_ARGS + [_random_muon(np.random.default_rng(s)) for s in range(3)], ids=str)
def test_muon_matches_torch_in_the_parameters_dtype(kwargs, dtype, rng):
    params, grads = make_problem(rng, MUON_SHAPES, dtype, 10)
    want, want_bufs = _torch_muon(params, grads, kwargs)
    opt = fo.Muon(_named(params), **kwargs)
    _step_all(opt, grads)
    for i, (p, w, buf) in enumerate(zip(params, want, want_bufs)):
        np.testing.assert_allclose(p, w, **TORCH_TOL[dtype], err_msg=f"p{i} {p.shape} {kwargs}")
        np.testing.assert_allclose(opt.state[f"p{i}"]["momentum_buffer"], buf, **TORCH_TOL[dtype],
                                   err_msg=f"momentum_buffer of p{i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", MUON_ARGS, ids=str)
def test_muon_matches_reference(kwargs, dtype, rng):
    params, grads = make_problem(rng, MUON_SHAPES + [(33, 17)], dtype, 10)
    want, want_state = reference.run(reference.muon, params, grads, {**MUON_DEFAULTS, **kwargs})
    opt = fo.Muon(_named(params), **kwargs)
    _step_all(opt, grads)
    for i, (p, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(p, w, **REF_TOL[dtype], err_msg=f"p{i} {p.shape}")
        buf = want_state[i]["momentum_buffer"]
        np.testing.assert_allclose(opt.state[f"p{i}"]["momentum_buffer"], buf, **state_tolerance(dtype, buf))


@pytest.mark.parametrize("dtype", DTYPES)
def test_muon_zero_gradient_only_decays(dtype):
    """A zero direction: Newton–Schulz of 0/max(0, eps) is 0, and the step is the decay alone."""
    p = np.linspace(-1, 1, 12, dtype=dtype).reshape(3, 4)
    start = p.copy()
    fo.Muon({"w": p}, lr=0.1, weight_decay=0.5).step({"w": np.zeros_like(p)})
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, start * (1 - 0.05), rtol=3e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("kwargs", [dict(), dict(lr=0.02, nesterov=False, weight_decay=0.0),
                                    dict(lr=0.02, adjust_lr_fn="match_rms_adamw", momentum=0.9)], ids=str)
def test_muon_is_near_torchs_bfloat16_muon(kwargs, rng):
    """torch.optim.Muon as shipped orthogonalizes in bfloat16 (8 bits of mantissa): over 10 steps
    our float32 run moves each parameter by the same displacement to within 5%."""
    torch = _torch()
    params, grads = make_problem(rng, [(16, 8), (5, 12), (32, 32)], np.float32, 10)
    starts = [p.copy() for p in params]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Muon(tparams, **kwargs)
    opt = fo.Muon(_named(params), **kwargs)
    for step_grads in grads:
        opt.step(_named(step_grads))
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    for i, (p, tp, p0) in enumerate(zip(params, tparams, starts)):
        ours, theirs = (p - p0).astype(np.float64), (tp.detach().numpy() - p0).astype(np.float64)
        assert np.linalg.norm(ours - theirs) <= 5e-2 * np.linalg.norm(theirs), f"p{i} {p.shape}"


# ---- Muon: torch's optimizer database --------------------------------------------------------------
def _muon_db():
    _torch()
    pytest.importorskip("expecttest")
    from torch.testing._internal import common_optimizers

    return next(i for i in common_optimizers.optim_db if i.optim_cls.__name__ == "Muon"), common_optimizers


def _muon_configs():
    try:
        info, _ = _muon_db()
    except pytest.skip.Exception:
        return [pytest.param(None, marks=pytest.mark.skip(reason="torch's optimizer database is not installed"))]
    return [pytest.param(oi.kwargs, id=oi.desc) for oi in info.optim_inputs_func(device="cpu")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", _muon_configs())
def test_muon_runs_torchs_configurations(kwargs, dtype, rng):
    """Each CPU configuration of torch's OptimizerInfo for Muon, on 2-D parameters (torch's
    default ones are not all 2-D), against torch's algorithm in the parameter's dtype; a tensor
    lr (torch's machinery for capture and compile) is refused naming lr."""
    torch = _torch()
    params, grads = make_problem(rng, [(10, 5), (5, 10), (33, 3)], dtype, 10)
    if any(torch.is_tensor(v) for v in kwargs.values()):
        before = [p.copy() for p in params]
        with pytest.raises(TypeError, match="lr"):
            fo.Muon(_named(params), **kwargs)
        assert all((p == q).all() for p, q in zip(params, before))
        return
    want, _ = _torch_muon(params, grads, kwargs)
    opt = fo.Muon(_named(params), **kwargs)
    _step_all(opt, grads)
    for i, (p, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(p, w, **TORCH_TOL[dtype], err_msg=f"p{i} {kwargs}")
    hyper = {k: tuple(v) if isinstance(v, (list, tuple)) else v
             for k, v in opt.param_groups[0].items() if k in MUON_DEFAULTS}
    assert hyper == {**MUON_DEFAULTS, **kwargs}


def _mirror(x, made):
    """torch-style params as arrays: each tensor one float32 array (one tensor given twice, one
    array given twice), in the same lists and group dicts."""
    torch = _torch()
    if torch.is_tensor(x):
        return made.setdefault(id(x), np.array(x.detach().numpy(), np.float32))
    if isinstance(x, dict):
        return {k: _mirror(v, made) if k == "params" else v for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_mirror(v, made) for v in x]
    return x


def test_muon_refuses_what_torch_refuses():
    """torch's construction errors for Muon, each refused (fastoptim also refuses the duplicates
    torch only warns about, and accepts named and unnamed arrays mixed:
    test_torch_optimizer_info.ERRORS_THAT_DIFFER)."""
    torch = _torch()
    info, common_optimizers = _muon_db()
    checked = 0
    for error in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        if error.error_on != common_optimizers.OptimizerErrorEnum.CONSTRUCTION_ERROR:
            continue
        oi = error.optimizer_error_input
        if "names" in oi.desc:  # fastoptim names unnamed arrays by position
            continue
        params = _mirror(oi.params, {}) if oi.params is not None else [np.zeros((3, 2), np.float32)]
        with pytest.raises((TypeError, ValueError)):
            fo.Muon(params, **oi.kwargs)
        checked += 1
    assert checked >= 3


# ---- convergence ---------------------------------------------------------------------------------------
def _minimize(opt, x, gradient, steps, decay):
    for _ in range(steps):
        opt.step([gradient(x).astype(x.dtype)])
        for group in opt.param_groups:
            group["lr"] *= decay
    return x


def _rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _rosenbrock_gradient(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adafactor_reaches_the_minimum_of_a_convex_quadratic(dtype):
    # test_reference.py's quadratic: f(x) = 0.5 * sum(a * (x - c)^2), minimum at c
    a, c = np.linspace(0.5, 2.0, 16), np.linspace(-1.0, 1.0, 16)
    x = np.full(16, 0.1, dtype)
    _minimize(fo.Adafactor([x], lr=0.05), x, lambda x: a * (x - c), 4000, 0.999)
    np.testing.assert_allclose(x, c, atol=2e-2)
    # and the same quadratic as a 4x4 matrix, factored
    x = np.full((4, 4), 0.1, dtype)
    _minimize(fo.Adafactor([x], lr=0.05), x, lambda x: a.reshape(4, 4) * (x - c.reshape(4, 4)), 4000, 0.999)
    np.testing.assert_allclose(x, c.reshape(4, 4), atol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adafactor_makes_progress_on_rosenbrock(dtype):
    start = np.array([-1.2, 1.0], dtype)
    x = start.copy()
    _minimize(fo.Adafactor([x], lr=0.05), x, _rosenbrock_gradient, 3000, 0.9999)
    assert _rosenbrock(x) < 0.1 * _rosenbrock(start), (x, _rosenbrock(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_muon_solves_matrix_least_squares(dtype):
    """min ||A X − B||² / n over X (16×8), B = A X*: from zero to 1e-4 of the starting loss."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((32, 16))
    b = a @ rng.standard_normal((16, 8))
    x = np.zeros((16, 8), dtype)
    loss = lambda x: float(np.sum((a @ x - b) ** 2)) / len(a)  # noqa: E731
    start = loss(x)
    opt = fo.Muon({"X": x}, lr=0.1, weight_decay=0.0)
    for _ in range(300):
        opt.step({"X": (2 * a.T @ (a @ x - b) / len(a)).astype(dtype)})
        opt.param_groups[0]["lr"] *= 0.985
    assert loss(x) < 1e-4 * start, loss(x)


# ---- checkpoints ------------------------------------------------------------------------------------
def _adafactor(params):
    return fo.Adafactor(params, lr=0.4, weight_decay=0.01, d=1.5)


def _muon(params):
    return fo.Muon(params, lr=0.02, nesterov=True, adjust_lr_fn="match_rms_adamw")


CHECKPOINTED = {"adafactor": (_adafactor, [(5, 3), (1025,), (), (2, 3, 4)]), "muon": (_muon, [(16, 8), (5, 12)])}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CHECKPOINTED)
def test_resumed_run_continues_bit_identically(name, dtype, rng):
    make, shapes = CHECKPOINTED[name]
    params, grads = make_problem(rng, shapes, dtype, 10)
    resumed = [p.copy() for p in params]
    straight = make(_named(params))
    _step_all(straight, grads)
    first = make(_named(resumed))
    _step_all(first, grads[:5])
    saved, fresh = pickle.loads(pickle.dumps((first.state_dict(), [p.copy() for p in resumed])))
    second = make(_named(fresh))
    second.load_state_dict(saved)
    _step_all(second, grads[5:])
    for a, b in zip(params, fresh):
        assert a.tobytes() == b.tobytes()
    for key in straight.state:
        for slot, value in straight.state[key].items():
            assert np.asarray(value).tobytes() == np.asarray(second.state[key][slot]).tobytes(), (key, slot)
    assert straight.state_dict()["param_groups"] == second.state_dict()["param_groups"]


@pytest.mark.parametrize(("what", "change", "error", "message"), [
    ("row_var shape", lambda st, g: st.update(row_var=np.zeros((1, 4), np.float32)), ValueError, "row_var"),
    ("col_var dtype", lambda st, g: st.update(col_var=np.zeros((1, 4))), TypeError, "col_var"),
    ("missing col_var", lambda st, g: st.pop("col_var"), ValueError, "col_var"),
    ("variance of a matrix", lambda st, g: st.update(variance=np.zeros((3, 4), np.float32)), ValueError, "variance"),
    ("bad beta2_decay", lambda st, g: g.update(beta2_decay=0.5), ValueError, "beta2_decay"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_adafactor_bad_state_dict_is_refused_and_nothing_changes(what, change, error, message):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    opt = fo.Adafactor({"w": w})
    opt.step({"w": np.ones((3, 4), np.float32)})
    sd = opt.state_dict()
    change(sd["state"]["w"], sd["param_groups"][0])
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"] and after["state"]["w"]["step"] == 1
    for k in ("row_var", "col_var"):
        assert after["state"]["w"][k].tobytes() == before["state"]["w"][k].tobytes()


# ---- refusals -------------------------------------------------------------------------------------------
def _v():
    return [np.zeros(3, np.float32)]


def _m():
    return [np.zeros((3, 2), np.float32)]


BAD_CONSTRUCTIONS = [
    ("eps a float", lambda: fo.Adafactor(_v(), eps=1e-3), TypeError, r"\(eps1, eps2\)"),
    ("eps of 3", lambda: fo.Adafactor(_v(), eps=(None, 1e-3, 1.0)), TypeError, "eps"),
    ("eps1 < 0", lambda: fo.Adafactor(_v(), eps=(-1e-30, 1e-3)), ValueError, "eps"),
    ("eps2 < 0", lambda: fo.Adafactor(_v(), eps=(None, -1e-3)), ValueError, "eps"),
    ("eps2 None", lambda: fo.Adafactor(_v(), eps=(1e-30, None)), (TypeError, ValueError), "eps"),
    ("beta2_decay > 0", lambda: fo.Adafactor(_v(), beta2_decay=0.8), ValueError, "beta2_decay"),
    ("d < 1", lambda: fo.Adafactor(_v(), d=0.5), ValueError, r"\bd\b"),
    ("adafactor lr < 0", lambda: fo.Adafactor(_v(), lr=-1e-2), ValueError, "lr"),
    ("adafactor nan lr", lambda: fo.Adafactor(_v(), lr=math.nan), ValueError, "lr"),
    ("adafactor wd < 0", lambda: fo.Adafactor(_v(), weight_decay=-0.1), ValueError, "weight_decay"),
    ("adafactor maximize not bool", lambda: fo.Adafactor(_v(), maximize=1), TypeError, "maximize"),
    ("adafactor state_dtype", lambda: fo.Adafactor(_v(), state_dtype="bfloat16"), (TypeError, ValueError),
     "state_dtype"),
    ("adafactor int8 state", lambda: fo.Adafactor(_v(), state_dtype="int8"), (TypeError, ValueError), "state_dtype"),
    ("adafactor ema", lambda: fo.Adafactor(_v(), ema_decay=0.999), (TypeError, ValueError), "ema_decay"),
    ("adafactor cautious", lambda: fo.Adafactor(_v(), cautious=True), (TypeError, ValueError), "cautious"),
    ("adafactor unknown", lambda: fo.Adafactor(_v(), betas=(0.9, 0.99)), TypeError, "betas"),
    ("muon 1-D", lambda: fo.Muon({"bias": np.zeros(3, np.float32)}), ValueError,
     r"'bias'[\s\S]*(split_for_muon|MuonWithAdamW)|(split_for_muon|MuonWithAdamW)[\s\S]*'bias'"),
    ("muon 0-D", lambda: fo.Muon({"w": np.zeros((2, 2)), "scale": np.zeros(())}), ValueError, "scale"),
    ("muon 3-D", lambda: fo.Muon({"conv": np.zeros((2, 3, 4))}), ValueError, "conv"),
    ("muon lr < 0", lambda: fo.Muon(_m(), lr=-1.0), ValueError, "lr"),
    ("muon momentum < 0", lambda: fo.Muon(_m(), momentum=-0.5), ValueError, "momentum"),
    ("muon wd < 0", lambda: fo.Muon(_m(), weight_decay=-0.1), ValueError, "weight_decay"),
    ("muon adjust_lr_fn", lambda: fo.Muon(_m(), adjust_lr_fn="arbitrary"), ValueError, "adjust_lr_fn|arbitrary"),
    ("muon 2 coefficients", lambda: fo.Muon(_m(), ns_coefficients=(3.4, -4.7)), (TypeError, ValueError),
     "ns_coefficients"),
    ("muon ns_steps float", lambda: fo.Muon(_m(), ns_steps=2.5), TypeError, "ns_steps"),
    ("muon nesterov not bool", lambda: fo.Muon(_m(), nesterov="yes"), TypeError, "nesterov"),
    ("muon state_dtype", lambda: fo.Muon(_m(), state_dtype="bfloat16"), (TypeError, ValueError), "state_dtype"),
    ("muon ema", lambda: fo.Muon(_m(), ema_decay=0.999), (TypeError, ValueError), "ema_decay"),
    ("muon cautious", lambda: fo.Muon(_m(), cautious=True), (TypeError, ValueError), "cautious"),
    ("muon maximize", lambda: fo.Muon(_m(), maximize=True), TypeError, "maximize"),
]


@pytest.mark.parametrize(("what", "make", "error", "message"), BAD_CONSTRUCTIONS, ids=[b[0] for b in BAD_CONSTRUCTIONS])
def test_bad_construction_is_refused(what, make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_adafactor_accepts_what_torch_accepts():
    """The boundaries torch accepts: eps1 = 0, eps2 = 0, beta2_decay = 0, d = 1, lr = 0; foreach
    (ignored) and state_dtype=None."""
    for kwargs in [dict(eps=(0.0, 0.0)), dict(beta2_decay=0.0), dict(d=1.0), dict(lr=0.0),
                   dict(foreach=True), dict(foreach=False), dict(state_dtype=None)]:
        fo.Adafactor(_v(), **kwargs)
    for kwargs in [dict(momentum=0.0), dict(lr=0.0, weight_decay=0.0), dict(adjust_lr_fn="original"),
                   dict(nesterov=False), dict(ns_steps=1)]:
        fo.Muon(_m(), **kwargs)


@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
def test_bfloat16_params_are_refused(cls):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = np.zeros((3, 2), ml_dtypes.bfloat16)
    with pytest.raises((TypeError, ValueError), match="bfloat16"):
        getattr(fo, cls)({"w": w})


def _snapshot(opt, params):
    return copy.deepcopy(([p.copy() for p in params], opt.state_dict()))


def _assert_same_bits(a, b):
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        assert x.tobytes() == y.tobytes()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for slot, v in sa["state"][k].items():
            assert np.asarray(v).tobytes() == np.asarray(sb["state"][k][slot]).tobytes(), (k, slot)


def _stepped(cls):
    """An optimizer one step in, its arrays and a good gradient."""
    if cls == "Adafactor":
        params = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.arange(4.0), "s": np.ones((), np.float32)}
        opt = fo.Adafactor(params, lr=0.1, weight_decay=0.1)
    else:
        params = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "v": np.arange(6.0).reshape(2, 3)}
        opt = fo.Muon(params, lr=0.1)
    good = {k: np.ones_like(v) for k, v in params.items()}
    opt.step(good)
    return opt, list(params.values()), good


BAD_STEPS = [
    ("wrong shape", lambda g: {**g, "w": np.ones((4, 3), np.float32)}, ValueError, "shape"),
    ("wrong dtype", lambda g: {**g, "w": np.ones((3, 4))}, TypeError, "dtype"),
    ("missing key", lambda g: {k: v for k, v in g.items() if k != "w"}, ValueError, "'w'"),
    ("strided", lambda g: {**g, "w": np.ones((3, 8), np.float32)[:, ::2]}, ValueError, "contiguous"),
    ("a list too short", lambda g: list(g.values())[:1], ValueError, "arrays"),
]


@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
@pytest.mark.parametrize(("what", "bad", "error", "message"), BAD_STEPS, ids=[b[0] for b in BAD_STEPS])
def test_bad_grads_are_refused_and_nothing_changes(cls, what, bad, error, message):
    opt, params, good = _stepped(cls)
    before = _snapshot(opt, params)
    with pytest.raises(error, match=message):
        opt.step(bad(good))
    _assert_same_bits(before, _snapshot(opt, params))
    opt.step(list(good.values()))  # still usable, a list in the parameters' order
    assert not _same_params(before[0], params)


def _same_params(a, b):
    return all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


BAD_EDITS = [
    ("Adafactor", "lr", -0.1, ValueError, "lr"),
    ("Adafactor", "eps", 1e-3, TypeError, "eps"),
    ("Adafactor", "eps", (None, -1.0), ValueError, "eps"),
    ("Adafactor", "beta2_decay", 0.5, ValueError, "beta2_decay"),
    ("Adafactor", "d", 0.9, ValueError, "d"),
    ("Adafactor", "weight_decay", math.nan, ValueError, "weight_decay"),
    ("Muon", "lr", math.inf, ValueError, "lr"),
    ("Muon", "momentum", -1.0, ValueError, "momentum"),
    ("Muon", "adjust_lr_fn", "other", ValueError, "adjust_lr_fn|other"),
    ("Muon", "ns_coefficients", (1.0, 2.0), (TypeError, ValueError), "ns_coefficients"),
    ("Muon", "ns_steps", "5", TypeError, "ns_steps"),
]


@pytest.mark.parametrize(("cls", "key", "value", "error", "message"), BAD_EDITS,
                         ids=[f"{b[0]}-{b[1]}={b[2]!r}" for b in BAD_EDITS])
def test_an_invalid_edit_of_a_group_is_refused_at_the_next_step(cls, key, value, error, message):
    opt, params, good = _stepped(cls)
    before = _snapshot(opt, params)
    saved = opt.param_groups[0][key]
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=message):
        opt.step(good)
    opt.param_groups[0][key] = saved
    _assert_same_bits(before, _snapshot(opt, params))
    opt.step(good)


@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
def test_accumulate_is_refused_and_nothing_changes(cls):
    opt, params, good = _stepped(cls)
    before = _snapshot(opt, params)
    with pytest.raises((TypeError, ValueError)):
        opt.accumulate(good)
    _assert_same_bits(before, _snapshot(opt, params))
    opt.step(good)  # a step after the refusal is a plain step, nothing accumulated in it
    twin, twin_params, _ = _stepped(cls)
    twin.step(good)
    assert _same_params(params, twin_params)



@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
def test_replacing_a_groups_arrays_is_refused_and_nothing_changes(cls):
    """As every fastoptim optimizer (test_bad_input.test_replacing_a_groups_arrays_is_refused):
    a group's arrays are fixed at construction (add_param_group adds more); an array put in
    their place is refused at the next step, neither array nor the state changing."""
    opt, params, good = _stepped(cls)
    before = _snapshot(opt, params)
    stranger = np.zeros((3, 4), np.float32)
    opt.param_groups[0]["params"] = [stranger] + opt.param_groups[0]["params"][1:]
    with pytest.raises(ValueError, match=r"add_param_group|param_groups\[0\]"):
        opt.step(good)
    assert not stranger.any()
    opt.param_groups[0]["params"] = params[:len(opt.param_groups[0]["params"])]
    _assert_same_bits(before, _snapshot(opt, params))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
def test_grad_scale_unscales(cls, dtype):
    """step(g·s, grad_scale=s) is step(g): bit for bit for a power of two, to rounding for 3."""
    shapes, kwargs = ([(17, 9), (33,), ()], dict(lr=0.3)) if cls == "Adafactor" else ([(16, 8), (5, 12)], dict(lr=0.02))
    params, grads = make_problem(np.random.default_rng(9), shapes, dtype, 6)
    plain_params = [p.copy() for p in params]
    scaled, plain = getattr(fo, cls)(_named(params), **kwargs), getattr(fo, cls)(_named(plain_params), **kwargs)
    for step_grads in grads[:3]:
        scaled.step(_named([np.asarray(g * dtype(1024.0)) for g in step_grads]), grad_scale=1024.0)
        plain.step(_named(step_grads))
    assert _same_params(params, plain_params)
    for step_grads in grads[3:]:
        scaled.step(_named([np.asarray(g * dtype(3.0)) for g in step_grads]), grad_scale=3.0)
        plain.step(_named(step_grads))
    for p, q in zip(params, plain_params):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)

# ---- groups, frozen parameters, same bits everywhere -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("cls", "shapes", "groups"), [
    ("Adafactor", [(6, 5), (7,), (2, 3, 4)], [dict(lr=0.3, weight_decay=0.1), dict(lr=0.02, d=2.0, maximize=True)]),
    ("Muon", [(6, 5), (4, 9), (8, 8)], [dict(lr=0.05, nesterov=False), dict(lr=0.01, adjust_lr_fn="match_rms_adamw")]),
], ids=["Adafactor", "Muon"])
def test_groups_are_separate_optimizers(cls, shapes, groups, dtype, rng):
    """Two param groups with their own settings step as two optimizers would, bit for bit; a
    parameter without a gradient keeps its value and state."""
    params, grads = make_problem(rng, shapes, dtype, 6)
    apart = [p.copy() for p in params]
    together = getattr(fo, cls)([dict(params={"a": params[0], "b": params[1]}, **groups[0]),
                                 dict(params={"c": params[2]}, **groups[1])])
    first = getattr(fo, cls)({"a": apart[0], "b": apart[1]}, **groups[0])
    second = getattr(fo, cls)({"c": apart[2]}, **groups[1])
    frozen_at = 3
    for t, (ga, gb, gc) in enumerate(grads):
        gb = None if t == frozen_at else gb
        if t == frozen_at:
            kept = params[1].copy(), copy.deepcopy(together.state["b"])
        together.step({"a": ga, "b": gb, "c": gc})
        first.step({"a": ga, "b": gb})
        second.step({"c": gc})
        if t == frozen_at:
            assert params[1].tobytes() == kept[0].tobytes()
            for slot, value in kept[1].items():
                assert np.asarray(together.state["b"][slot]).tobytes() == np.asarray(value).tobytes()
    for p, q in zip(params, apart):
        assert p.tobytes() == q.tobytes()


# The same bytes on every target and thread count: tests/test_bits.py.


# ---- split_for_muon and MuonWithAdamW -----------------------------------------------------------------
def _model(rng, dtype=np.float32):
    return {"embed": rng.standard_normal((20, 8)).astype(dtype), "w1": rng.standard_normal((8, 16)).astype(dtype),
            "b1": rng.standard_normal(16).astype(dtype), "conv": rng.standard_normal((2, 3, 4)).astype(dtype),
            "w2": rng.standard_normal((16, 4)).astype(dtype), "scale": np.ones((), dtype)}


def test_split_for_muon(rng):
    params = _model(rng)
    muon_params, other = fo.split_for_muon(params)
    assert list(muon_params) == ["embed", "w1", "w2"] and list(other) == ["b1", "conv", "scale"]
    assert all(muon_params[k] is params[k] for k in muon_params) and all(other[k] is params[k] for k in other)


@pytest.mark.parametrize("dtype", DTYPES)
def test_muon_with_adamw_is_muon_and_adamw_stepped_apart(dtype, rng):
    params = _model(rng, dtype)
    apart = {k: v.copy() for k, v in params.items()}
    kwargs = dict(lr=0.03, weight_decay=0.05, momentum=0.9, adamw_lr=1e-3, adamw_betas=(0.8, 0.99), adamw_eps=1e-7,
                  adamw_weight_decay=0.02)
    both = fo.MuonWithAdamW(params, **kwargs)
    muon_params, other = fo.split_for_muon(apart)
    muon = fo.Muon(muon_params, lr=0.03, weight_decay=0.05, momentum=0.9)
    adamw = fo.AdamW(other, lr=1e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.02)
    assert isinstance(both.muon, fo.Muon) and isinstance(both.adamw, fo.AdamW)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        both.step(grads)
        muon.step({k: grads[k] for k in muon_params})
        adamw.step({k: grads[k] for k in other})
    for k in params:
        assert params[k].tobytes() == apart[k].tobytes(), k
    assert both.muon.param_groups[0]["lr"] == 0.03 and both.adamw.param_groups[0]["lr"] == 1e-3



def test_muon_with_adamw_clips_and_resumes_as_one(rng):
    """max_grad_norm measures both halves' gradients together (the float64 norm of all of them);
    its state dict resumes bit-identically."""
    params = _model(rng)
    start = {k: v.copy() for k, v in params.items()}
    grads = [{k: np.asarray(3 * rng.standard_normal(v.shape), np.float32) for k, v in params.items()}
             for _ in range(6)]
    both = fo.MuonWithAdamW(params, max_grad_norm=5.0)
    for g in grads:
        info = both.step(g)
        assert info.grad_norm == pytest.approx(_norm64(g.values()), rel=1e-6) and not info.skipped
    first = fo.MuonWithAdamW(start, max_grad_norm=5.0)
    for g in grads[:3]:
        first.step(g)
    saved = pickle.loads(pickle.dumps((first.state_dict(), {k: v.copy() for k, v in start.items()})))
    second = fo.MuonWithAdamW(saved[1], max_grad_norm=5.0)
    second.load_state_dict(saved[0])
    for g in grads[3:]:
        second.step(g)
    for k in params:
        assert params[k].tobytes() == saved[1][k].tobytes(), k

def test_muon_with_adamw_defaults(rng):
    params = _model(rng)
    both = fo.MuonWithAdamW(params)
    muon, adamw = both.muon.param_groups[0], both.adamw.param_groups[0]
    assert (muon["lr"], muon["weight_decay"], muon["momentum"]) == (0.02, 0.1, 0.95)
    assert (adamw["lr"], tuple(adamw["betas"]), adamw["eps"], adamw["weight_decay"]) == (3e-4, (0.9, 0.999), 1e-8,
                                                                                          0.01)


# ---- the gradient options of the step -----------------------------------------------------------------
def _norm64(grads):
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))


CLIPPED = {"Adafactor": ([(17, 9), (33,), (2, 3, 4)], dict(lr=0.3, weight_decay=0.01)),
           "Muon": ([(16, 8), (5, 12)], dict(lr=0.02, momentum=0.9))}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", CLIPPED)
def test_clipping_is_a_step_on_clipped_gradients(cls, dtype):
    """max_grad_norm: StepInfo.grad_norm is the float64 norm of the gradients, and the step is
    the plain step on the gradients times torch's coefficient min(1, max/(norm + 1e-6));
    math.inf measures and changes nothing."""
    shapes, kwargs = CLIPPED[cls]
    params, grads = make_problem(np.random.default_rng(5), shapes, dtype, 8)
    plain_params, measured_params = [p.copy() for p in params], [p.copy() for p in params]
    unmeasured_params = [p.copy() for p in params]
    limit = 14.0
    clipped = getattr(fo, cls)(_named(params), max_grad_norm=limit, **kwargs)
    plain = getattr(fo, cls)(_named(plain_params), **kwargs)
    measured = getattr(fo, cls)(_named(measured_params), max_grad_norm=math.inf, **kwargs)
    unmeasured = getattr(fo, cls)(_named(unmeasured_params), **kwargs)
    count = 0
    for t, step_grads in enumerate(grads):
        step_grads = [g * dtype(0.5 + t % 3) for g in step_grads]  # some steps above the limit, some below
        norm = _norm64(step_grads)
        coefficient = min(1.0, limit / (norm + 1e-6))
        count += coefficient < 1
        info = clipped.step(_named(step_grads))
        assert info.grad_norm == pytest.approx(norm, rel=NORM_RTOL[dtype]) and info.skipped is False
        plain.step(_named([np.asarray(g * coefficient, dtype) for g in step_grads]))
        assert measured.step(_named(step_grads)).grad_norm == info.grad_norm
        assert unmeasured.step(_named(step_grads)) == fo.StepInfo(None, False)
    assert 0 < count < len(grads)
    for p, q, r, s in zip(params, plain_params, measured_params, unmeasured_params):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
        assert r.tobytes() == s.tobytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("cls", CLIPPED)
def test_skip_nonfinite(cls, bad):
    """A step whose gradients hold a NaN or an infinity changes nothing and reports it."""
    shapes, kwargs = CLIPPED[cls]
    params, grads = make_problem(np.random.default_rng(6), shapes, np.float32, 4)
    twin_params = [p.copy() for p in params]
    opt = getattr(fo, cls)(_named(params), skip_nonfinite=True, **kwargs)
    twin = getattr(fo, cls)(_named(twin_params), **kwargs)
    for t, step_grads in enumerate(grads):
        if t in (0, 2):
            poisoned = [g.copy() for g in step_grads]
            poisoned[0].flat[3] = bad
            before = _snapshot(opt, params)
            info = opt.step(_named(poisoned))
            assert info.skipped is True
            _assert_same_bits(before, _snapshot(opt, params))
        assert opt.step(_named(step_grads)).skipped is False
        twin.step(_named(step_grads))
    assert _same_params(params, twin_params)



# ---- what the review of the change found ---------------------------------------------------------------
@pytest.mark.parametrize("cls", ["Adafactor", "Muon"])
def test_a_parameter_made_read_only_later_is_refused_before_anything_moves(cls):
    rng = np.random.default_rng(3)
    params = {"a": rng.standard_normal((5, 4)), "b": rng.standard_normal((4, 6))}
    opt = getattr(fo, cls)(params)
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    before = _bytes_of(opt, params)
    params["b"].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['b'\] is read-only"):
        opt.step(grads)
    assert _bytes_of(opt, params) == before


def _bytes_of(opt, params):
    return ([p.tobytes() for p in params.values()] +
            [repr(v) if not isinstance(v, np.ndarray) else v.tobytes()
             for n in sorted(opt.state) for _, v in sorted(opt.state[n].items())])


def test_adafactor_keeps_a_nan_variance_as_torch(rng):
    torch = pytest.importorskip("torch")
    start = rng.standard_normal(6)
    ours = {"v": start.copy()}
    opt = fo.Adafactor(ours, lr=0.1)
    theirs = torch.tensor(start.copy(), requires_grad=True)
    ref = torch.optim.Adafactor([theirs], lr=0.1)
    grads = [rng.standard_normal(6) for _ in range(3)]
    for k, g in enumerate(grads):
        opt.step({"v": g})
        theirs.grad = torch.tensor(g)
        ref.step()
        if k == 0:
            opt.state["v"]["variance"][0] = np.inf  # NaN after the next lerp
            ref.state[theirs]["variance"][0] = float("inf")
    np.testing.assert_allclose(ours["v"], theirs.detach().numpy(), rtol=1e-12, equal_nan=True)


def test_adafactor_steps_under_numpy_floating_point_errors_raised(rng):
    params = {"w": rng.standard_normal((4, 3))}
    opt = fo.Adafactor(params, eps=(0.0, 1e-3))
    with np.errstate(all="raise"):
        opt.step({"w": np.zeros((4, 3))})  # 0/0 in the factors: NaN, as torch, and no FloatingPointError
    assert opt.state["w"]["step"] == 1


def test_muon_with_adamw_refuses_shared_memory(rng):
    w = rng.standard_normal((4, 5))
    with pytest.raises(ValueError, match="share memory|overlap"):
        fo.MuonWithAdamW({"w": w, "b": w[0]})
    params = {"w": rng.standard_normal((4, 5)), "b": rng.standard_normal(5)}
    opt = fo.MuonWithAdamW(params)
    before = [p.tobytes() for p in params.values()]
    buffer = opt.muon.state["w"]["momentum_buffer"]
    with pytest.raises(ValueError, match="share memory|overlap"):
        opt.step({"w": rng.standard_normal((4, 5)), "b": buffer[0]})
    assert [p.tobytes() for p in params.values()] == before


def test_muon_buffer_weight_is_torchs(rng):
    torch = pytest.importorskip("torch")
    g = rng.standard_normal((3, 4)).astype(np.float32)
    opt = fo.Muon({"w": np.zeros((3, 4), np.float32)}, momentum=0.95)
    opt.step({"w": g})
    buf = torch.zeros(3, 4)
    buf.lerp_(torch.tensor(g), 1 - 0.95)
    np.testing.assert_array_equal(opt.state["w"]["momentum_buffer"], buf.numpy())
