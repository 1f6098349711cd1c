"""Schedule-free's train/eval switch: the parameter is y while training and x = y + (1 - 1/β)(z - y)
for evaluation; the mode starts as training, guards step() and travels in the state dict."""

from __future__ import annotations

import numpy as np
import pytest

import fastoptim as fo
import reference
from problems import make_problem
from registry import CASES

# AdamW with β1 = 0.8, SGD with momentum 0.6: eval()'s lerp weight 1 - 1/β is -0.25 and -0.67,
# on either side of torch.lerp's switch of formula at |w| = 0.5
SETTINGS = [(c, c.arg_sets[-1]) for c in CASES if c.name in ("schedule_free_adamw", "schedule_free_sgd")]
IDS = [c.name for c, _ in SETTINGS]
SHAPES = [(33,), (4, 5), ()]


def _beta(case, kwargs):
    hyper = case.hyper(kwargs)
    return hyper["betas"][0] if "betas" in hyper else hyper["momentum"]


def _stepped(case, kwargs, dtype, steps=5, seed=0):
    """An optimizer after `steps` steps on its parameters, with the gradients of the next ones."""
    params, grads = make_problem(np.random.default_rng(seed), SHAPES, dtype, steps + 2)
    opt = case.cls(params, **kwargs)
    for g in grads[:steps]:
        opt.step(g)
    return opt, params, grads[steps:]


def _same(a, b):
    """Equal, bit for bit where arrays, through the dicts and lists of a state dict."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def _snapshot(opt, params):
    return [p.copy() for p in params], opt.state_dict()


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_a_new_optimizer_is_in_train_mode(case, kwargs):
    opt = case.cls([np.zeros(3)], **kwargs)
    assert opt.training is True
    assert opt.state_dict()["train_mode"] is True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_eval_gives_x_and_train_restores_y(case, kwargs, dtype):
    """eval() sets p to y + (1 - 1/β)(z - y) and train() brings y back, both within 16 ulps of
    the larger of |y| and |z|, over β (the lerps' rounding), of the float64 formula."""
    opt, params, _ = _stepped(case, kwargs, dtype)
    beta = _beta(case, kwargs)
    ys = [p.astype(np.float64) for p in params]
    zs = [opt.state[i]["z"].astype(np.float64) for i in range(len(params))]
    atol = [16 * np.finfo(dtype).eps * max(np.max(np.abs(y), initial=0), np.max(np.abs(z), initial=0)) / beta
            for y, z in zip(ys, zs)]
    opt.eval()
    assert opt.training is False
    for p, y, z, tol in zip(params, ys, zs, atol):
        x = y.copy()
        reference.schedule_free_switch(x, {"z": z}, beta, train=False)
        np.testing.assert_allclose(p, x, rtol=0, atol=tol)
    assert any(np.max(np.abs(p - y)) > 100 * tol for p, y, tol in zip(params, ys, atol))  # x is not y
    opt.train()
    assert opt.training is True
    for p, y, tol in zip(params, ys, atol):
        np.testing.assert_allclose(p, y, rtol=0, atol=tol)


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_switching_to_the_mode_it_is_in_changes_nothing(case, kwargs):
    """train() while training, and eval() a second time, touch neither parameters nor state."""
    opt, params, _ = _stepped(case, kwargs, np.float32)
    before = _snapshot(opt, params)
    opt.train()
    assert _same(_snapshot(opt, params), before)
    opt.eval()
    once = _snapshot(opt, params)
    assert not _same(once[0], before[0])
    opt.eval()
    assert _same(_snapshot(opt, params), once)


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_step_in_eval_mode_raises_and_changes_nothing(case, kwargs):
    opt, params, grads = _stepped(case, kwargs, np.float64)
    opt.eval()
    before = _snapshot(opt, params)
    with pytest.raises(RuntimeError):
        opt.step(grads[0])
    assert _same(_snapshot(opt, params), before)
    assert opt.training is False


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_eval_and_train_before_any_step_change_nothing(case, kwargs):
    """No z yet: the switches only set the mode, and the first step is that of an optimizer that
    never switched."""
    params, grads = make_problem(np.random.default_rng(1), SHAPES, np.float32, 2)
    twin_params = [p.copy() for p in params]
    opt, twin = case.cls(params, **kwargs), case.cls(twin_params, **kwargs)
    before = _snapshot(opt, params)
    opt.eval()
    assert opt.training is False
    assert _same(_snapshot(opt, params)[0], before[0])
    opt.train()
    assert _same(_snapshot(opt, params), before)
    for g in grads:
        opt.step(g)
        twin.step(g)
    assert _same(_snapshot(opt, params), _snapshot(twin, twin_params))


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_state_dict_carries_the_mode(case, kwargs):
    """A state dict saved in eval mode puts the optimizer it is loaded into in eval mode (where
    step() raises and train() turns the saved x back into y); one saved in train mode, train mode."""
    opt, params, grads = _stepped(case, kwargs, np.float64)
    opt.eval()
    saved, x = opt.state_dict(), [p.copy() for p in params]
    assert saved["train_mode"] is False

    resumed_params = [p.copy() for p in x]
    resumed = case.cls(resumed_params, **kwargs)
    resumed.load_state_dict(saved)
    assert resumed.training is False
    assert resumed.state_dict()["train_mode"] is False
    with pytest.raises(RuntimeError):
        resumed.step(grads[0])
    opt.train()
    resumed.train()
    for g in grads:
        opt.step(g)
        resumed.step(g)
    assert _same(resumed_params, params)

    back = case.cls([p.copy() for p in params], **kwargs)
    back.eval()
    back.load_state_dict(opt.state_dict())
    assert back.training is True


@pytest.mark.parametrize(("case", "kwargs"), SETTINGS, ids=IDS)
def test_lookahead_refuses_schedule_free(case, kwargs):
    """Lookahead's slow weights would average the iterates again, behind train()/eval()."""
    with pytest.raises(TypeError, match="averages its own iterates"):
        fo.Lookahead(case.cls([np.zeros(3)], **kwargs))


def test_the_weights_in_the_state_are_float32_for_bfloat16_parameters():
    """z (and ASGD's average ax) hold weights: float32 for bfloat16 parameters by default, where
    bfloat16 rounded to nearest would drop their small steps; state_dtype still decides."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for cls, slot in ((fo.ScheduleFreeAdamW, "z"), (fo.ScheduleFreeSGD, "z"), (fo.ASGD, "ax")):
        w = np.ones(8, ml_dtypes.bfloat16)
        opt = cls([w], lr=1e-3)
        grad = np.full(8, 1e-3, ml_dtypes.bfloat16)
        opt.step([grad])
        assert opt.state[0][slot].dtype == np.float32, cls.__name__
        moved = opt.state[0][slot].copy()
        opt.step([grad])
        if slot == "z":  # z steps by lr·u, about 1e-6 here: kept in float32, lost in bfloat16
            assert not np.array_equal(opt.state[0][slot], moved), cls.__name__
        explicit = cls([np.ones(8, ml_dtypes.bfloat16)], lr=1e-3, state_dtype="bfloat16")
        assert explicit.state[0][slot].dtype == np.uint16 or explicit.state[0][slot].dtype == ml_dtypes.bfloat16
    assert fo.AdamW([np.ones(8, ml_dtypes.bfloat16)]).state[0]["exp_avg"].dtype == ml_dtypes.bfloat16  # moments
