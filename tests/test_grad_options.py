"""The gradient side of the step (issue 19): max_grad_norm, grad_scale, skip_nonfinite and the
StepInfo a step returns, on every rule; the stand-alone norm helpers; against torch, against a
float64 reference and against the plain step."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem, on_first_target_then, tolerance
from registry import CASES

torch = pytest.importorskip("torch")

SHAPES = [(33,), (17, 9), (1025,)]
PARITY = [c for c in CASES if c.torch_name in ("Adam", "AdamW", "SGD", "RMSprop")]
TORCH_TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
NORM_RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _norm64(grads) -> float:
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))


def _inner(opt):
    return opt.optimizer if isinstance(opt, fo.Lookahead) else opt


def _snapshot(opt, params):
    """Every bit a step could change: the parameters, the state dict (state arrays, step
    counts, running scalars) and, for Lookahead, its count."""
    return copy.deepcopy(([p.copy() for p in params], opt.state_dict()))


def _same_bits(a, b) -> None:
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))
    _same_tree(sa, sb)


def _same_tree(a, b) -> None:
    assert type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_tree(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    else:
        assert a == b or (a != a and b != b)


# ---- against torch ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", PARITY, ids=lambda c: c.name)
def test_max_grad_norm_is_torch_clip_then_step(case, dtype, seed):
    """20 steps of clip_grad_norm_ then torch.optim, with a limit that clips some steps and not
    others; the returned norm is torch's total norm."""
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    params, grads = make_problem(rng, SHAPES, dtype, 20)
    for t, step_grads in enumerate(grads):  # norms ~17, ~35 and ~87: a limit in (25, 60) clips some
        for g in step_grads:
            g *= (0.5, 1.0, 2.5)[t % 3]
    limit = float(rng.uniform(25, 60))
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, case.torch_name)(tparams, **kwargs)
    opt = case.cls(params, max_grad_norm=limit, **kwargs)
    clipped = 0
    for step_grads in grads:
        info = opt.step(step_grads)
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        total = float(torch.nn.utils.clip_grad_norm_(tparams, limit))
        topt.step()
        assert info.skipped is False
        assert info.grad_norm == pytest.approx(total, rel=NORM_RTOL[dtype])
        clipped += total > limit
    assert 3 <= clipped <= 17
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **TORCH_TOL[dtype])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_grad_scale_is_torch_fused_adam(amsgrad, dtype, seed):
    """grad_scale divides every gradient, as torch's fused Adam with its grad_scale does."""
    rng = np.random.default_rng(seed)
    params, grads = make_problem(rng, SHAPES, dtype, 20)
    kwargs = dict(lr=float(rng.uniform(1e-3, 1e-2)), weight_decay=0.01, amsgrad=amsgrad)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Adam(tparams, fused=True, **kwargs)
    opt = fo.Adam(params, fused=True, **kwargs)
    for t, step_grads in enumerate(grads):
        scale = 2.0 ** (4 + t % 5)
        scaled = [g * dtype(scale) for g in step_grads]
        assert opt.step(scaled, grad_scale=scale) == fo.StepInfo(None, False)
        for tp, g in zip(tparams, scaled):
            tp.grad = torch.from_numpy(g.copy())
        topt.grad_scale = torch.tensor(scale, dtype=torch.float32)
        topt.found_inf = torch.tensor(0.0)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **TORCH_TOL[dtype])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, "inf", 3.0, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_helpers_match_torch(norm_type, dtype):
    rng = np.random.default_rng(7)
    grads = [np.asarray(rng.standard_normal(s) * 3, dtype) for s in [(5,), (70, 300), (4097,), (0,), ()]]
    # torch refuses the max-norm of an empty tensor; ours is 0, as it adds nothing to any p-norm
    tgrads = [torch.from_numpy(g.copy()) for g in grads if g.size]
    grads = [g for g in grads if g.size] + [grads[3]]
    rtol = NORM_RTOL[dtype] * (10 if norm_type == 0.5 else 1)
    want = float(torch.nn.utils.get_total_norm(tgrads, norm_type))
    assert fo.get_total_norm(grads, norm_type) == pytest.approx(want, rel=rtol)
    assert fo.get_total_norm({"a": grads[0], "b": grads[1]}, norm_type) == pytest.approx(
        float(torch.nn.utils.get_total_norm(tgrads[:2], norm_type)), rel=rtol)
    params = [torch.nn.Parameter(t.clone()) for t in tgrads]
    for p, t in zip(params, tgrads):
        p.grad = t.clone()
    limit = want / 3
    total = fo.clip_grad_norm_(grads, limit, norm_type)
    want_total = float(torch.nn.utils.clip_grad_norm_(params, limit, norm_type))
    assert total == pytest.approx(want_total, rel=rtol)
    for g, p in zip(grads, params):
        np.testing.assert_allclose(g, p.grad.numpy(), **TORCH_TOL[dtype])
    before = [g.copy() for g in grads]
    fo.clip_grad_norm_(grads, want * 10, norm_type)  # below the limit: untouched, every bit
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_helpers_nonfinite_as_torch(bad, norm_type):
    grads = [np.ones(10, np.float32), np.ones(5000, np.float32)]
    grads[1][4321] = bad
    tgrads = [torch.from_numpy(g.copy()) for g in grads]
    want = float(torch.nn.utils.get_total_norm(tgrads, norm_type))
    got = fo.get_total_norm(grads, norm_type)
    assert (math.isnan(got) and math.isnan(want)) or got == want
    before = [g.copy() for g in grads]
    with pytest.raises(RuntimeError, match="non-finite"):
        fo.clip_grad_norm_(grads, 1.0, norm_type, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    params = [torch.nn.Parameter(t.clone()) for t in tgrads]
    for p, t in zip(params, tgrads):
        p.grad = t.clone()
    torch.nn.utils.clip_grad_norm_(params, 1.0, norm_type)
    fo.clip_grad_norm_(grads, 1.0, norm_type)
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(g, p.grad.numpy())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", fo.available_targets())
def test_helpers_same_bits_on_every_target(target, threads, restore_runtime):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(10**6 + 3).astype(np.float32), rng.standard_normal((300, 77))]
    fo.set_target(fo.available_targets()[0])
    fo.set_num_threads(1)
    want = [fo.get_total_norm(grads, p) for p in (2.0, 1.0, math.inf)]
    clipped_want = [g.copy() for g in grads]
    fo.clip_grad_norm_(clipped_want, 1.0)
    fo.set_target(target)
    fo.set_num_threads(threads)
    assert [fo.get_total_norm(grads, p) for p in (2.0, 1.0, math.inf)] == want
    fo.clip_grad_norm_(grads, 1.0)
    for g, w in zip(grads, clipped_want):
        np.testing.assert_array_equal(g, w)


# ---- every rule, through its registry row --------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_rule_clips_as_a_prescaled_step(case, dtype):
    """max_grad_norm equals the plain step on gradients scaled by the float64 reference's
    coefficient; grad_norm is the float64 norm; math.inf measures and changes no bit."""
    rng = np.random.default_rng(11)
    kwargs = case.arg_sets[-1]
    params, grads = make_problem(rng, SHAPES, dtype, 6)
    plain_params, inf_params = [p.copy() for p in params], [p.copy() for p in params]
    clipped = case.cls(params, max_grad_norm=50.0, **kwargs)
    plain = case.cls(plain_params, **kwargs)
    measured = case.cls(inf_params, **kwargs)
    _inner(measured).max_grad_norm = math.inf
    default = case.cls([p.copy() for p in params], **kwargs)
    for t, step_grads in enumerate(grads):
        step_grads = [g * dtype(1 + 2 * (t % 2)) for g in step_grads]  # norms ~35 and ~104: every other clipped
        norm = _norm64(step_grads)
        coefficient = min(1.0, 50.0 / (norm + 1e-6))
        info = clipped.step(step_grads)
        assert info.grad_norm == pytest.approx(norm, rel=NORM_RTOL[dtype]) and not info.skipped
        plain.step([np.asarray(g * coefficient, dtype) for g in step_grads])
        assert measured.step(step_grads).grad_norm == info.grad_norm
        assert default.step(step_grads) == fo.StepInfo(None, False)
    lr = _inner(clipped).param_groups[0]["lr"]
    for p, q, r, s in zip(params, plain_params, inf_params, default.param_groups[0]["params"]):
        np.testing.assert_allclose(p, q, **tolerance(dtype, lr, 6))
        np.testing.assert_array_equal(r, s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_rule_unscales(case, dtype):
    rng = np.random.default_rng(12)
    kwargs = case.arg_sets[-1]
    params, grads = make_problem(rng, SHAPES, dtype, 4)
    plain_params = [p.copy() for p in params]
    scaled_opt, plain = case.cls(params, **kwargs), case.cls(plain_params, **kwargs)
    for step_grads in grads:
        scaled_opt.step([g * dtype(1024.0) for g in step_grads], grad_scale=1024.0)
        plain.step(step_grads)
    for p, q in zip(params, plain_params):  # a power of two: exact
        np.testing.assert_array_equal(p, q)
    lr = _inner(plain).param_groups[0]["lr"]
    for step_grads in grads:
        scaled_opt.step([g * dtype(3.0) for g in step_grads], grad_scale=3.0)
        plain.step(step_grads)
    for p, q in zip(params, plain_params):
        np.testing.assert_allclose(p, q, **tolerance(dtype, lr, 8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_rule_skips_a_nonfinite_step(case, bad):
    """A skipped step leaves every bit as it was, and the run goes on as if it never came."""
    rng = np.random.default_rng(13)
    kwargs = case.arg_sets[-1]
    params, grads = make_problem(rng, SHAPES, np.float32, 5)
    twin_params = [p.copy() for p in params]
    opt = case.cls(params, skip_nonfinite=True, max_grad_norm=5.0, **kwargs)
    twin = case.cls(twin_params, skip_nonfinite=True, max_grad_norm=5.0, **kwargs)
    for t, step_grads in enumerate(grads):
        if t in (0, 3):  # before the first step (fresh state) and later
            poisoned = [g.copy() for g in step_grads]
            poisoned[2][1000] = bad
            before = _snapshot(opt, params)
            info = opt.step(poisoned)
            assert info.skipped is True
            assert math.isnan(info.grad_norm) if np.isnan(bad) else math.isinf(info.grad_norm)
            _same_bits(before, _snapshot(opt, params))
        assert opt.step(step_grads).skipped is False
        twin.step(step_grads)
    _same_bits(_snapshot(opt, params), _snapshot(twin, twin_params))


def test_finite_gradients_whose_squares_overflow_are_not_skipped():
    w = np.zeros(3)
    opt = fo.SGD([w], lr=1.0, skip_nonfinite=True)
    info = opt.step([np.array([1e200, 1e200, 0.0])])
    assert info.skipped is False and info.grad_norm == math.inf  # the float64 sum of squares overflowed
    assert w[0] == -1e200


def test_nonfinite_without_skip_steps_as_before():
    w, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    g = np.array([1, np.nan, 2, 3], np.float32)
    fo.Adam([w], lr=0.1).step([g])
    info = fo.Adam([v], lr=0.1, max_grad_norm=math.inf).step([g])
    assert math.isnan(info.grad_norm) and not info.skipped
    np.testing.assert_array_equal(w, v)
    assert np.isnan(w[1]) and np.isfinite(w[[0, 2, 3]]).all()


def test_clipping_a_nonfinite_norm_poisons_every_element_as_torch():
    w = np.zeros(4, np.float32)
    fo.SGD([w], lr=0.1, max_grad_norm=1.0).step([np.array([1, np.nan, 2, 3], np.float32)])
    t = torch.nn.Parameter(torch.zeros(4))
    t.grad = torch.tensor([1, float("nan"), 2, 3])
    torch.nn.utils.clip_grad_norm_([t], 1.0)
    torch.optim.SGD([t], lr=0.1).step()
    np.testing.assert_array_equal(w, t.detach().numpy())


def test_lookahead_counts_only_taken_steps():
    rng = np.random.default_rng(5)
    params, grads = make_problem(rng, SHAPES, np.float64, 6)
    twin_params = [p.copy() for p in params]
    opt = fo.Lookahead(fo.SGD(params, lr=0.1), k=2)
    twin = fo.Lookahead(fo.SGD(twin_params, lr=0.1), k=2)
    opt.skip_nonfinite = True
    assert opt.optimizer.skip_nonfinite is True
    for t, step_grads in enumerate(grads):
        if t == 1:
            poisoned = [g.copy() for g in step_grads]
            poisoned[0][0] = np.nan
            assert opt.step(poisoned).skipped
        opt.step(step_grads)
        twin.step(step_grads)
    _same_bits(_snapshot(opt, params), _snapshot(twin, twin_params))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", fo.available_targets())
@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_clipped_steps_same_bits_on_every_target(name, target, threads, restore_runtime):
    case = next(c for c in CASES if c.name == name)

    def run():
        rng = np.random.default_rng(21)
        params, grads = make_problem(rng, [(10**6 + 3,), (1000, 33)], np.float32, 3)
        opt = case.cls(params, max_grad_norm=100.0, **case.arg_sets[-1])
        norms = [opt.step(g, grad_scale=3.0).grad_norm for g in grads]
        return params, norms

    (want_params, want_norms), (params, norms) = on_first_target_then(target, threads, run)
    assert norms == want_norms
    for p, w in zip(params, want_params):
        np.testing.assert_array_equal(p, w)


# ---- options and bad input --------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_optimizer_takes_the_options(case):
    kwargs = case.arg_sets[0]
    opt = case.cls([np.zeros(3)], foreach=True, fused=False, capturable=False, differentiable=False,
                   max_grad_norm=2.0, skip_nonfinite=True, **kwargs)
    assert (opt.max_grad_norm, opt.skip_nonfinite) == (2.0, True)
    opt = case.cls([np.zeros(3)], foreach=None, fused=None, **kwargs)
    assert (opt.max_grad_norm, opt.skip_nonfinite) == (None, False)
    for key in ("capturable", "differentiable"):
        with pytest.raises(ValueError, match=f"{key}=True"):
            case.cls([np.zeros(3)], **{key: True}, **kwargs)
    with pytest.raises(TypeError, match="foreach must be True or False"):
        case.cls([np.zeros(3)], foreach="yes", **kwargs)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_norm'"):
        case.cls([np.zeros(3)], max_norm=1.0, **kwargs)


@pytest.mark.parametrize(("value", "error", "text"), [
    (-1.0, ValueError, "max_grad_norm must be >= 0"), (math.nan, ValueError, "max_grad_norm must be finite"),
    ("1", TypeError, "max_grad_norm must be a real number"), (True, TypeError, "max_grad_norm must be a real number"),
])
def test_bad_max_grad_norm(value, error, text):
    with pytest.raises(error, match=text):
        fo.Adam([np.zeros(3)], max_grad_norm=value)
    opt = fo.Adam([np.zeros(3)], max_grad_norm=1.0)
    with pytest.raises(error, match=text):
        opt.max_grad_norm = value
    assert opt.max_grad_norm == 1.0
    la = fo.Lookahead(fo.SGD([np.zeros(3)]))
    with pytest.raises(error, match=text):
        la.max_grad_norm = value
    with pytest.raises(TypeError, match="skip_nonfinite must be True or False"):
        opt.skip_nonfinite = 1


@pytest.mark.parametrize(("scale", "error", "text"), [
    (0.0, ValueError, "grad_scale must be > 0"), (-2.0, ValueError, "grad_scale must be > 0"),
    (math.nan, ValueError, "grad_scale must be finite"), (math.inf, ValueError, "grad_scale must be finite"),
    (1e-320, ValueError, "reciprocal"), (1e-39, ValueError, "reciprocal that float32 holds"),
    (1e50, ValueError, "reciprocal that float32 holds"), ("2", TypeError, "grad_scale must be a real number"),
])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_grad_scale_changes_nothing(case, scale, error, text):
    rng = np.random.default_rng(2)
    params, grads = make_problem(rng, SHAPES, np.float32, 2)
    opt = case.cls(params, max_grad_norm=1.0, **case.arg_sets[-1])
    opt.step(grads[0])
    before = _snapshot(opt, params)
    with pytest.raises(error, match=text):
        opt.step(grads[1], grad_scale=scale)
    _same_bits(before, _snapshot(opt, params))


def test_helpers_refuse_bad_arrays_and_change_nothing():
    good = np.ones(5, np.float32)
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype int64"):
        fo.clip_grad_norm_([good, np.ones(3, np.int64)], 1.0)
    with pytest.raises(ValueError, match=r"grads\[0\] is not contiguous"):
        fo.get_total_norm([np.ones((4, 4))[:, 1]])
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numpy.ndarray"):
        fo.get_total_norm([[1.0, 2.0]])
    frozen = np.full(5, 10.0, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[1\] is read-only; clip_grad_norm_ scales"):
        fo.clip_grad_norm_([good, frozen], 1.0)
    with pytest.raises(ValueError, match=r"grads\[1\] is read-only"):  # refused even when nothing needs scaling
        fo.clip_grad_norm_([good, frozen], 1e9)
    assert fo.get_total_norm([good, frozen]) > 0  # reading needs no write access
    base = np.full(10, 10.0)
    with pytest.raises(ValueError, match=r"grads\[0\] and grads\[1\] share memory"):
        fo.clip_grad_norm_([base[:6], base[4:]], 1.0)
    with pytest.raises(ValueError, match=r"grads\[0\] and grads\[1\] share memory"):
        fo.clip_grad_norm_([base, base], 1e9)
    np.testing.assert_array_equal(good, 1.0)
    np.testing.assert_array_equal(base, 10.0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        fo.get_total_norm([good], 0)
    with pytest.raises(ValueError, match="max_norm must be >= 0"):
        fo.clip_grad_norm_([good], -1.0)
    assert fo.get_total_norm([]) == 0.0 and fo.clip_grad_norm_([], 1.0) == 0.0
    assert fo.get_total_norm(np.full(4, 2.0)) == 4.0  # one array, as torch takes one tensor


def test_numpy_infinities_and_torch_defaults_are_accepted():
    inf64 = np.float64("inf")
    assert fo.Adam([np.zeros(3)], max_grad_norm=inf64).max_grad_norm == math.inf
    grads = [np.array([3.0, -4.0])]
    assert fo.get_total_norm(grads, inf64) == 4.0
    assert fo.clip_grad_norm_(grads, inf64) == 5.0 and grads[0][1] == -4.0
    opt = fo.SGD([np.zeros(3)], capturable=None, differentiable=None, foreach=None, fused=None)
    assert opt.max_grad_norm is None


def test_options_survive_copies():
    import pickle

    opt = fo.AdamW([np.zeros(3)], max_grad_norm=0.5, skip_nonfinite=True)
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert (clone.max_grad_norm, clone.skip_nonfinite) == (0.5, True)
        assert clone.step([np.full(3, 2.0)]).grad_norm == pytest.approx(math.sqrt(12))
        assert clone.step([np.array([1.0, np.nan, 0.0])]).skipped
        clone.max_grad_norm, clone.skip_nonfinite = None, False  # the plain step again
        assert clone.step([np.full(3, 2.0)]) == fo.StepInfo(None, False)
