"""L-BFGS (issue 27): parity with torch.optim.LBFGS in float64 on a logistic regression and on
Rosenbrock, with and without the strong Wolfe line search; float32 convergence; the native
vector algebra against NumPy; the same bits on every target and thread count; exact resume;
bad closures and hyper-parameters refused."""

from __future__ import annotations

import itertools
import pickle
import re

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _core

torch = pytest.importorskip("torch")


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    f = float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return f, g


def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 6)).astype(dtype)
    labels = (features @ rng.standard_normal(6) + 0.3 * rng.standard_normal(200) > 0).astype(dtype)
    return features, labels


def logistic(params: dict[str, np.ndarray], features, labels, l2=1e-2):
    """Mean cross-entropy of sigmoid(Xw + b) with an L2 term on w, and its gradients."""
    z = features @ params["w"] + params["b"]
    p = 1 / (1 + np.exp(-z))
    loss = float(np.mean(np.logaddexp(0, z) - labels * z) + 0.5 * l2 * params["w"] @ params["w"])
    r = (p - labels) / len(labels)
    return loss, {"w": features.T @ r + l2 * params["w"], "b": np.asarray(r.sum(), features.dtype)}


def torch_logistic(w, b, features, labels, l2=1e-2):
    z = torch.tensor(features) @ w + b
    y = torch.tensor(labels)
    return torch.mean(torch.nn.functional.softplus(z) - y * z) + 0.5 * l2 * w @ w


PROBLEMS = ["rosenbrock", "logistic"]
CONFIGS = [dict(), dict(line_search_fn="strong_wolfe"), dict(history_size=3, max_iter=7),
           dict(line_search_fn="strong_wolfe", history_size=2, max_iter=9, tolerance_change=1e-12)]


def _pair(problem: str, kwargs: dict):
    """fastoptim's optimizer and closure, and torch's, on the same problem, float64."""
    if problem == "rosenbrock":
        x = np.array([-1.2, 1.0, -0.5, 0.8, 1.5, 0.3])
        tx = torch.tensor(x.copy(), requires_grad=True)
        lr = 1 if kwargs.get("line_search_fn") else 1e-3
        opt, topt = fo.LBFGS([x], lr=lr, **kwargs), torch.optim.LBFGS([tx], lr=lr, **kwargs)

        def closure():
            f, g = rosenbrock(x)
            return f, [g]

        def tclosure():
            topt.zero_grad()
            f = torch.sum(100 * (tx[1:] - tx[:-1] ** 2) ** 2 + (1 - tx[:-1]) ** 2)
            f.backward()
            return f
        return opt, closure, topt, tclosure, [x], [tx]
    features, labels = _data()
    params = {"w": np.zeros(6), "b": np.zeros(())}
    w, b = torch.zeros(6, dtype=torch.float64, requires_grad=True), torch.zeros((), dtype=torch.float64,
                                                                                 requires_grad=True)
    opt, topt = fo.LBFGS(params, **kwargs), torch.optim.LBFGS([w, b], **kwargs)

    def closure():
        return logistic(params, features, labels)

    def tclosure():
        topt.zero_grad()
        f = torch_logistic(w, b, features, labels)
        f.backward()
        return f
    return opt, closure, topt, tclosure, [params["w"], params["b"]], [w, b]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=str)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_float64_matches_torch(problem, kwargs):
    opt, closure, topt, tclosure, ours, theirs = _pair(problem, kwargs)
    for _ in range(4):
        info = opt.step(closure)
        loss = topt.step(tclosure)
        assert info.loss == pytest.approx(loss.item(), rel=1e-10, abs=1e-14)
        for a, t in zip(ours, theirs):
            np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-10, atol=1e-13)
    state = topt.state[theirs[0]]
    assert (opt.state["func_evals"], opt.state["n_iter"]) == (state["func_evals"], state["n_iter"])
    assert len(opt.state_dict()["state"]["ro"]) == len(state["ro"])


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_float32_converges_to_the_same_optimum(line_search_fn):
    features, labels = _data(np.float32)
    optimum = {"w": np.zeros(6), "b": np.zeros(())}
    features64, labels64 = _data()
    exact = fo.LBFGS(optimum, line_search_fn="strong_wolfe", max_iter=500, tolerance_grad=1e-12, tolerance_change=0.0)
    exact.step(lambda: logistic(optimum, features64, labels64))
    best, grads = logistic(optimum, features64, labels64)
    assert max(np.abs(g).max() for g in grads.values()) < 1e-9  # the float64 optimum, converged
    params = {"w": np.zeros(6, np.float32), "b": np.zeros((), np.float32)}
    opt = fo.LBFGS(params, line_search_fn=line_search_fn, max_iter=100)
    for _ in range(3):
        opt.step(lambda: logistic(params, features, labels))
    # As close as a float32 loss can tell: within 4 float32 epsilons of the optimum's loss (in
    # float64; evaluating the loss in float32 is itself about one epsilon off), and so within
    # sqrt(2 * gap / smallest eigenvalue of the Hessian) of the optimum. Where in that valley the
    # line search stops depends on float32 rounding in NumPy's sums, which varies by host: 5e-4
    # from the optimum with strong Wolfe on an AMD EPYC (2026-12-02).
    gap = 4 * np.finfo(np.float32).eps * best
    reached, _ = logistic({k: v.astype(np.float64) for k, v in params.items()}, features64, labels64)
    assert reached - best <= gap
    design = np.hstack([features64, np.ones((len(labels64), 1))])
    prob = 1 / (1 + np.exp(-(design @ np.append(optimum["w"], optimum["b"]))))
    hessian = design.T @ (design * (prob * (1 - prob))[:, None]) / len(labels64) + np.diag([1e-2] * 6 + [0.0])
    radius = np.sqrt(2 * gap / np.linalg.eigvalsh(hessian)[0])
    np.testing.assert_allclose(params["w"], optimum["w"], atol=radius)
    np.testing.assert_allclose(params["b"], optimum["b"], atol=radius)
    x = np.array([-1.2, 1.0, -0.5, 0.8], np.float32)
    opt = fo.LBFGS([x], line_search_fn="strong_wolfe", max_iter=200, tolerance_change=0.0)
    opt.step(lambda: (lambda f, g: (f, [g]))(*rosenbrock(x)))
    np.testing.assert_allclose(x, 1.0, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 17, 4096, 100_003])
def test_combine_matches_numpy(dtype, n):
    rng = np.random.default_rng(n)
    x, y, z = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    out = np.empty(n, dtype)
    dot, most, total = _core.combine(out, x, 0.5, y, -2.0, z, True)
    expected = dtype(0.5) * x + dtype(-2.0) * y
    assert out.tobytes() == expected.tobytes()  # the same arithmetic, element by element
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert dot == pytest.approx(float(expected.astype(np.float64) @ z), rel=rtol, abs=rtol)
    assert most == (float(np.abs(expected).max()) if n else 0.0)
    assert total == pytest.approx(float(np.abs(expected).astype(np.float64).sum()), rel=rtol)
    assert _core.combine(None, x, 1.0, None, 0.0, z)[0] == pytest.approx(float(x.astype(np.float64) @ z), rel=rtol,
                                                                        abs=rtol)
    if n:
        x[n // 2] = np.nan
        assert np.isnan(_core.combine(None, x, 1.0, None, 0.0, None, True)[1])


def _trajectory(target, threads, line_search_fn):
    fo.set_target(target)
    fo.set_num_threads(threads)
    rng = np.random.default_rng(3)
    scale = np.linspace(0.5, 4.0, 60_001)
    x = rng.standard_normal(60_001).astype(np.float32)
    y = rng.standard_normal(999).astype(np.float32)
    opt = fo.LBFGS({"x": x, "y": y}, history_size=4, max_iter=8, line_search_fn=line_search_fn)
    for _ in range(2):
        opt.step(lambda: (float(np.sum(scale * x * x) + np.sum(y**4)), {"x": 2 * scale.astype(np.float32) * x,
                                                                          "y": 4 * y**3}))
    return x.tobytes() + y.tobytes() + pickle.dumps(opt.state_dict())


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_same_bytes_on_every_target_and_thread_count(line_search_fn, restore_runtime):
    runs = {(t, n): _trajectory(t, n, line_search_fn) for t, n in itertools.product(fo.available_targets(), (1, 2))}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_exact_resume_from_a_state_dict_and_a_pickle(line_search_fn):
    features, labels = _data()

    def run(params, opt, steps):
        for _ in range(steps):
            opt.step(lambda: logistic(params, features, labels))

    straight = {"w": np.zeros(6), "b": np.zeros(())}
    run(straight, fo.LBFGS(straight, history_size=3, max_iter=3, line_search_fn=line_search_fn), 4)
    resumed = {"w": np.zeros(6), "b": np.zeros(())}
    first = fo.LBFGS(resumed, history_size=3, max_iter=3, line_search_fn=line_search_fn)
    run(resumed, first, 2)
    saved, pickled = first.state_dict(), pickle.dumps((resumed, first))
    second = fo.LBFGS(resumed, history_size=3, max_iter=3, line_search_fn=line_search_fn)
    second.load_state_dict(saved)
    run(resumed, second, 2)
    revived_params, revived = pickle.loads(pickled)
    run(revived_params, revived, 2)
    for name in straight:
        assert resumed[name].tobytes() == straight[name].tobytes() == revived_params[name].tobytes()


def test_a_scheduler_drives_lr_and_none_gradients_are_zeros():
    x, frozen = np.array([2.0, -1.0]), np.array([5.0])
    opt = fo.LBFGS({"x": x, "frozen": frozen}, lr=0.1, max_iter=1)
    sched = fo.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(lambda: (float(x @ x), {"x": 2 * x, "frozen": None}))
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.05 and frozen[0] == 5.0


def test_a_small_gradient_returns_at_once_with_the_loss():
    x = np.array([1.0, 2.0])
    opt = fo.LBFGS([x], tolerance_grad=1e-3)
    info = opt.step(lambda: (3.5, [np.full(2, 1e-4)]))
    assert info.loss == 3.5 and info.grad_norm is None and not info.skipped
    assert x.tolist() == [1.0, 2.0] and opt.state == {"func_evals": 1, "n_iter": 0}


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("result", "error", "text"), [
    (1.0, TypeError, "closure must return (loss, grads), got float"),
    ((1.0, [np.zeros(2)], 3), TypeError, "closure must return (loss, grads), got tuple"),
    (("one", [np.zeros(2)]), TypeError, "with a real loss, got str"),
    ((float("nan"), [np.zeros(2)]), ValueError, "closure returned a NaN loss"),
    ((1.0, [np.zeros(3)]), ValueError, "grads[0]"),
    ((1.0, [np.zeros(2, np.float32)]), TypeError, "grads[0]"),
    ((1.0, {"other": np.zeros(2)}), ValueError, "no entry for parameter 0"),
])
def test_a_bad_closure_result_at_the_first_evaluation_changes_nothing(result, error, text):
    x = np.array([1.0, 2.0])
    opt = fo.LBFGS([x])
    before = pickle.dumps(opt.state_dict())
    with pytest.raises(error, match=re.escape(text)):
        opt.step(lambda: result)
    assert x.tolist() == [1.0, 2.0] and pickle.dumps(opt.state_dict()) == before


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_a_nan_loss_mid_step_leaves_a_consistent_state(line_search_fn):
    """The step raises; the next step continues from where the parameters are."""
    x = np.array([3.0, -2.0])
    opt = fo.LBFGS([x], line_search_fn=line_search_fn, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        return (float("nan") if len(calls) == 3 else float(x @ x)), [2 * x]
    with pytest.raises(ValueError, match="NaN loss"):
        opt.step(closure)
    assert np.isfinite(x).all()
    calls.append(1)  # no more NaN
    for _ in range(5):
        opt.step(closure)
    assert np.abs(x).max() < 1e-3


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    (dict(history_size=0), ValueError, "history_size must be >= 1"),
    (dict(history_size=2.5), TypeError, "history_size"),
    (dict(lr=-1.0), ValueError, "lr must be >= 0"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(max_eval=0), ValueError, "max_eval must be >= 1"),
    (dict(line_search_fn="armijo"), ValueError, "line_search_fn must be None or 'strong_wolfe'"),
])
def test_bad_hyper_parameters_are_refused(kwargs, error, text):
    with pytest.raises(error, match=re.escape(text)):
        fo.LBFGS([np.zeros(2)], **kwargs)


def test_bad_parameters_and_edits_are_refused():
    with pytest.raises(TypeError, match="must share a dtype"):
        fo.LBFGS([np.zeros(2), np.zeros(2, np.float32)])
    with pytest.raises(ValueError, match="one parameter group"):
        fo.LBFGS([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}])
    with pytest.raises(ValueError, match="not C-contiguous"):
        fo.LBFGS([np.zeros((4, 4), order="F")])
    x = np.ones(2)
    opt = fo.LBFGS([x])
    opt.param_groups[0]["history_size"] = 5
    with pytest.raises(ValueError, match="history_size is fixed at construction"):
        opt.step(lambda: (1.0, [x]))
    opt.param_groups[0]["history_size"] = 100
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step([x])
    assert x.tolist() == [1.0, 1.0]


def test_a_bad_state_dict_is_refused_whole():
    x = np.array([1.0, -1.0])
    opt = fo.LBFGS([x], history_size=2)
    opt.step(lambda: (float(x @ x), [2 * x]))
    good = opt.state_dict()
    before = pickle.dumps(opt.state_dict())
    for key, value, text in [("old_dirs", np.zeros((1, 3)), "must be a float64 array of shape (1, 2)"),
                             ("ro", [1.0, 2.0, 3.0], "at most 2 numbers"), ("n_iter", -1, "n_iter"),
                             ("d", np.zeros(2, np.float32), "'d'")]:
        bad = {"state": {**good["state"], key: value}, "param_groups": good["param_groups"]}
        if key == "ro":
            bad["state"]["old_dirs"] = bad["state"]["old_stps"] = np.zeros((3, 2))
        with pytest.raises((TypeError, ValueError), match=re.escape(text)):
            opt.load_state_dict(bad)
        assert pickle.dumps(opt.state_dict()) == before


def test_the_docstring_example_runs():
    import doctest
    test = doctest.DocTestParser().get_doctest(fo.LBFGS.__doc__, {"np": np, "fo": fo}, "LBFGS", None, 0)
    report: list[str] = []
    result = doctest.DocTestRunner(verbose=False).run(test, out=report.append)
    assert result.attempted == 4 and result.failed == 0, "".join(report)


def _misaligned(n):
    return np.zeros(n * 4 + 1, np.uint8)[1:].view(np.float32)


F32, F64 = "must be a native-order float32", "must be a native-order float64"


@pytest.mark.parametrize(("call", "error", "text"), [
    (lambda a: _core.combine(a, a.astype(np.float64), 1.0, None, 0.0, None), TypeError, "out " + F64),
    (lambda a: _core.combine(a, a, 1.0, a[:-1], 0.0, None), ValueError, "y holds 7 elements, expected 8"),
    (lambda a: _core.combine(a, a, 1.0, None, 0.0, a.astype(np.float64)), TypeError, "z " + F32),
    (lambda a: _core.combine(a[::2], a[::2], 1.0, None, 0.0, None), ValueError, "x must be C-contiguous"),
    (lambda a: _core.combine(_misaligned(8), a, 1.0, None, 0.0, None), ValueError, "out must be aligned"),
    (lambda a: _core.combine(np.frombuffer(a.tobytes(), np.float32), a, 1.0, None, 0.0, None), ValueError,
     "out is read-only"),
    (lambda a: _core.combine(a, a, 1.0, [1.0] * 8, 0.0, None), TypeError, "y must be a numpy.ndarray or None"),
    (lambda a: _core.combine(a, a.astype(np.int32), 1.0, None, 0.0, None), TypeError, "x " + F32),
])
def test_combine_refuses_bad_arrays_and_writes_nothing(call, error, text):
    a = np.arange(8, dtype=np.float32)
    with pytest.raises(error, match=re.escape(text)):
        call(a)
    assert a.tolist() == list(range(8))


def test_combine_narrows_huge_coefficients_to_infinity():
    a = np.ones(4, np.float32)
    _core.combine(a, a, 1e300, None, 0.0, None)
    assert np.isposinf(a).all()


def test_the_step_info_is_still_a_pair_with_the_loss_beside_it():
    x = np.array([1.0, -1.0])
    info = fo.LBFGS([x], max_iter=2).step(lambda: (float(x @ x), [2 * x]))
    assert isinstance(info, fo.StepInfo) and tuple(info) == (None, False) and info.loss == 2.0
    norm, skipped = info
    assert pickle.loads(pickle.dumps(info)).loss == 2.0
    plain = fo.AdamW([np.zeros(2)], max_grad_norm=1.0).step([np.ones(2)])
    assert len(plain) == 2 and plain.loss is None


def test_an_inconsistent_state_dict_is_refused_and_an_infinite_loss_round_trips():
    x = np.array([1.0, -1.0])
    opt = fo.LBFGS([x], max_iter=2)
    good = opt.state_dict()
    with pytest.raises(ValueError, match="inconsistent"):
        opt.load_state_dict({"state": {**good["state"], "n_iter": 5}, "param_groups": good["param_groups"]})
    assert opt.state == {"func_evals": 0, "n_iter": 0}
    calls = []

    def closure():
        calls.append(1)
        return (float("inf") if len(calls) == 1 else float(x @ x)), [2 * x]
    opt.step(closure)
    saved = opt.state_dict()
    fresh = fo.LBFGS([x.copy()], max_iter=2)
    fresh.load_state_dict(saved)
    assert fresh.state_dict()["state"]["n_iter"] == saved["state"]["n_iter"]


def test_a_parameter_resized_in_place_is_refused_before_anything_moves():
    x, y = np.ones(4), np.ones(3)
    opt = fo.LBFGS([x, y])
    y.resize(5, refcheck=False)
    with pytest.raises(ValueError, match="changed dtype or size in place"):
        opt.step(lambda: (1.0, [np.ones(4), np.ones(5)]))
    assert (x == 1).all()
