"""Every rule that torch.optim has, beside torch, for 20 steps with random hyper-parameters."""

from __future__ import annotations

import numpy as np
import pytest

from problems import make_problem
from registry import CASES

torch = pytest.importorskip("torch")

TORCH_CASES = [c for c in CASES if c.torch_name]
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# torch keeps NAdam's running product of momentum coefficients (mu_product) in a float32
# tensor even for float64 parameters; ours is a double, so float64 results differ by ~1e-9.
# ASGD's eta is such a float32 tensor too (6e-8 relative), so each step's move eta·g carries 6e-8
# of itself: 20 steps of lr <= 0.1 on O(1) gradients differ by up to ~4e-8 in float64.
LOOSER = {("nadam", np.float64): dict(rtol=1e-8, atol=1e-9), ("asgd", np.float64): dict(rtol=1e-7, atol=1e-7)}


def _torch_kwargs(kwargs):
    return {k: v for k, v in kwargs.items()}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_matches_torch_after_20_steps(case, dtype, seed):
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    params, grads = make_problem(rng, [(33,), (17, 9), (1025,)], dtype, 20)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, case.torch_name)(tparams, **_torch_kwargs(kwargs))
    opt = case.cls(params, **kwargs)
    for step_grads in grads:
        opt.step(step_grads)
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    tol = LOOSER.get((case.name, dtype), TOLERANCE[dtype])
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)
    saved = opt.state_dict()["state"]
    for name, tp in zip(range(len(params)), tparams):
        for slot, value in topt.state[tp].items():
            if slot == "step":
                assert saved[name]["step"] == int(value)
            elif value.ndim == 0 and slot not in opt.state[name]:  # a running scalar such as mu_product
                assert saved[name][slot] == pytest.approx(float(value), rel=1e-6), slot
            else:
                np.testing.assert_allclose(opt.state[name][slot], value.numpy(), **tol, err_msg=slot)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgdw_is_torch_sgd_after_decoupled_decay(dtype, seed):
    """torch has no SGDW; its decoupled form is torch's SGD without weight decay, after
    p <- p * (1 - lr * weight_decay) each step (Loshchilov & Hutter 2019, Algorithm 1)."""
    import fastoptim as fo
    from registry import _random_sgd

    rng = np.random.default_rng(seed)
    kwargs = dict(_random_sgd(rng), weight_decay=float(rng.uniform(1e-3, 0.1)))
    params, grads = make_problem(rng, [(33,), (17, 9), (1025,)], dtype, 20)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.SGD(tparams, **{**kwargs, "weight_decay": 0.0})
    opt = fo.SGDW(params, **kwargs)
    for step_grads in grads:
        opt.step(step_grads)
        with torch.no_grad():
            for tp in tparams:
                tp.mul_(1 - kwargs["lr"] * kwargs["weight_decay"])
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **TOLERANCE[dtype])
