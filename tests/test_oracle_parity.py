"""The rules torch.optim lacks, beside the library each comes from, for 20 steps with random
hyper-parameters: schedule-free AdamW and SGD (schedulefree), ADOPT (pytorch_optimizer), Adan
and AdEMAMix (optax), and the cautious Lion and AdEMAMix (pytorch_optimizer). Parameters, the
state slots whose names map, and schedule-free's eval()/train() switch.

The cautious Adam, AdamW, SGD and SGDW have no oracle installed here (timm, whose optimizers
have them, is not installable): the registry's float64 references (reference.adam_cautious,
sgd_cautious, sgdw_cautious), written from the formula, are their check in test_reference.py;
only AdamW's with eps=0 also meets pytorch_optimizer's AdamP with its projection off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optax_oracle import OPTAX_SLOTS, SEEDS, SHAPES, case_inputs

import fastoptim as fo
from problems import make_problem
from registry import CASES

CASE = {c.name: c for c in CASES}
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _torch_step(topt, tparams, step_grads):
    torch = pytest.importorskip("torch")
    for tp, g in zip(tparams, step_grads):
        tp.grad = torch.from_numpy(g.copy())  # the oracles write into their gradients
    topt.step()


def _torch_oracle(make, params, grads, train=False):
    """The torch optimizer make(tensors) after a step per entry of grads (train(): schedule-free's
    oracle starts in eval mode), with its tensors."""
    torch = pytest.importorskip("torch")
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = make(tparams)
    if train:
        topt.train()
    for step_grads in grads:
        _torch_step(topt, tparams, step_grads)
    return topt, tparams


def _schedule_free_class(name):
    schedulefree = pytest.importorskip("schedulefree")
    classes = {"schedule_free_adamw": schedulefree.AdamWScheduleFree, "schedule_free_sgd": schedulefree.SGDScheduleFree}
    return classes[name]


def _schedule_free(name, slots):
    def run(kwargs, params, grads):
        cls = _schedule_free_class(name)
        topt, tparams = _torch_oracle(lambda ts: cls(ts, foreach=False, **kwargs), params, grads, train=True)
        return ([tp.detach().numpy() for tp in tparams],
                {s: [topt.state[tp][s].numpy() for tp in tparams] for s in slots},
                {s: topt.param_groups[0][s] for s in ("lr_max", "weight_sum")})
    return run


def _adopt(kwargs, params, grads):
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    kwargs = dict(kwargs)
    e = kwargs.pop("clip_exponent")
    topt, tparams = _torch_oracle(
        lambda ts: pytorch_optimizer.ADOPT(ts, clip_lambda=lambda step: step**e, foreach=False, **kwargs),
        params, grads)
    return ([tp.detach().numpy() for tp in tparams],
            {s: [topt.state[tp][s].numpy() for tp in tparams] for s in ("exp_avg", "exp_avg_sq")}, {})


@pytest.fixture(scope="module")
def optax_results(tmp_path_factory):
    """optax's Adan and AdEMAMix for every case of the test below, computed in a child process:
    JAX starts threads at import, and other tests fork this process (test_process.py)."""
    pytest.importorskip("optax")
    out = tmp_path_factory.mktemp("optax") / "results.npz"
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("optax_oracle.py")), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with np.load(out) as saved:
        return dict(saved)


def _from_optax(results, name, dtype, seed, count):
    """The child's results for one case: parameters, slots by our names, no running scalars."""
    key = f"{name}/{np.dtype(dtype).name}/{seed}"
    slots = {s: [results[f"{key}/{s}/{i}"] for i in range(count)] for s in OPTAX_SLOTS[name]}
    return [results[f"{key}/param/{i}"] for i in range(count)], slots, {}


def _pytorch_optimizer_cautious(name, slots):
    """pytorch_optimizer's `name` with cautious=True (its apply_cautious: u·[u·g > 0]·n/(k + 1)
    per tensor), per parameter (foreach=False), with its state. Our weight decay is decoupled,
    p ← p·(1 − γλ) beside the update: weight_decouple=True, fixed_decay=False there."""
    def run(kwargs, params, grads):
        pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
        cls = getattr(pytorch_optimizer, name)
        topt, tparams = _torch_oracle(
            lambda ts: cls(ts, weight_decouple=True, fixed_decay=False, foreach=False, cautious=True, **kwargs),
            params, grads)
        state = {s: [topt.state[tp][s].numpy() for tp in tparams] for s in slots}
        return [tp.detach().numpy() for tp in tparams], state, {}
    return run


ORACLES = {"schedule_free_adamw": _schedule_free("schedule_free_adamw", ["z", "exp_avg_sq"]),
           "schedule_free_sgd": _schedule_free("schedule_free_sgd", ["z"]), "adopt": _adopt,
           # Lion: its direction sign(lerp(m, g, 1 − β1)); AdEMAMix: the mask on m1 alone, t_alpha_beta3
           # None or T as ours (None is our 0)
           "lion_cautious": _pytorch_optimizer_cautious("Lion", ["exp_avg"]),
           "ademamix_cautious": _pytorch_optimizer_cautious("AdEMAMix", ["exp_avg", "exp_avg_sq", "exp_avg_slow"])}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [*ORACLES, *OPTAX_SLOTS])
def test_matches_its_oracle_after_20_steps(name, dtype, seed, request):
    """Parameters, the state slots and the running scalars after 20 steps."""
    kwargs, params, grads = case_inputs(name, dtype, seed)
    if name in OPTAX_SLOTS:
        want, want_slots, want_scalars = _from_optax(request.getfixturevalue("optax_results"), name, dtype, seed,
                                                     len(params))
    else:
        want, want_slots, want_scalars = ORACLES[name](kwargs, params, grads)
    case = CASE[name]
    opt = case.cls(params, **kwargs)
    for step_grads in grads:
        opt.step(step_grads)
    tol = TOLERANCE[dtype]
    for i, (p, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(p, w, **tol, err_msg=f"param {i}: {kwargs}")
    saved = opt.state_dict()["state"]
    for i in range(len(params)):
        assert saved[i]["step"] == 20
        for slot, values in want_slots.items():
            np.testing.assert_allclose(opt.state[i][slot], values[i], **tol, err_msg=f"{slot} of param {i}: {kwargs}")
        for scalar, value in want_scalars.items():
            assert saved[i][scalar] == pytest.approx(value, rel=1e-12), scalar


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["schedule_free_adamw", "schedule_free_sgd"])
def test_schedule_free_eval_and_train_match_the_oracle(name, dtype, seed):
    """After 20 steps, eval() gives the oracle's x, train() back the oracle's y, a step after that
    the oracle's step, and the state dict's train_mode follows."""
    cls = _schedule_free_class(name)
    case = CASE[name]
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    params, grads = make_problem(rng, SHAPES, dtype, 21)
    topt, tparams = _torch_oracle(lambda ts: cls(ts, foreach=False, **kwargs), params, grads[:20], train=True)
    opt = case.cls(params, **kwargs)
    for step_grads in grads[:20]:
        opt.step(step_grads)
    tol = TOLERANCE[dtype]

    def same(when):
        for i, (p, tp) in enumerate(zip(params, tparams)):
            np.testing.assert_allclose(p, tp.detach().numpy(), **tol, err_msg=f"param {i} {when}: {kwargs}")

    for switch, mode in [("eval", False), ("train", True)]:
        getattr(opt, switch)()
        getattr(topt, switch)()
        same(f"after {switch}()")
        assert opt.training is mode and opt.state_dict()["train_mode"] is mode
    opt.step(grads[20])
    _torch_step(topt, tparams, grads[20])
    same("after a step that followed eval() and train()")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cautious_adamw_with_eps_0_matches_adamp_without_its_projection(dtype, seed):
    """Part of an oracle for the cautious Adam: pytorch_optimizer's AdamP(cautious=True) masks m
    against g after the sign as ours does, and is AdamW's step where its extras drop out: delta=0
    never projects (its test is a |cosine| below 0) and with eps=0 its denominator
    (sqrt(v) + eps)/sqrt(1 − β2ᵗ) is ours, sqrt(v)/sqrt(1 − β2ᵗ) + eps. So: decoupled weight decay,
    no amsgrad, eps=0 (the rest of the cautious Adam's settings meet only reference.adam_cautious)."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    rng = np.random.default_rng(seed)
    drawn = CASE["adam_cautious"].random_args(rng)
    kwargs = {**{k: v for k, v in drawn.items() if k not in ("amsgrad", "decoupled_weight_decay")}, "eps": 0.0}
    params, grads = make_problem(rng, SHAPES, dtype, 20)
    topt, tparams = _torch_oracle(
        lambda ts: pytorch_optimizer.AdamP(ts, weight_decouple=True, fixed_decay=False, delta=0.0, foreach=False,
                                           cautious=True, **kwargs), params, grads)
    opt = fo.AdamW(params, cautious=True, **kwargs)
    for step_grads in grads:
        opt.step(step_grads)
    tol = TOLERANCE[dtype]
    for i, (p, tp) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol, err_msg=f"param {i}: {kwargs}")
        for slot in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(opt.state[i][slot], topt.state[tp][slot].numpy(), **tol,
                                       err_msg=f"{slot} of param {i}: {kwargs}")
