"""Every rule against its independent float64 reference, for awkward sizes, both dtypes,
every target and 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

import fastoptim as fo
import reference
from problems import make_problem, state_tolerance, tolerance
from registry import ARG_CASES, CASES, arg_id

SIZES = [0, 1, 7, 8, 15, 16, 17, 31, 33, 1023, 1025]


def _check(case, kwargs, shapes, dtype, rng, steps=5, reference_run=reference.run):
    params, grads = make_problem(rng, shapes, dtype, steps)
    expected, expected_state = reference_run(case.reference, params, grads, case.hyper(kwargs))
    opt = case.cls({f"p{i}": p for i, p in enumerate(params)}, **kwargs)
    for step_grads in grads:
        opt.step({f"p{i}": g for i, g in enumerate(step_grads)})
    checkpoint = opt.state_dict()
    saved = checkpoint["optimizer"]["state"] if "optimizer" in checkpoint else checkpoint["state"]
    for i, (p, want) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(p, want, **tolerance(dtype, case.hyper(kwargs)["lr"], steps), err_msg=f"param p{i}")
        for slot, value in expected_state[i].items():
            if isinstance(value, (np.ndarray, np.generic)):
                np.testing.assert_allclose(opt.state[f"p{i}"][slot], value, **state_tolerance(dtype, value),
                                           err_msg=f"{slot} of p{i}")
            else:  # a running scalar, saved with each parameter
                assert saved[f"p{i}"][slot] == pytest.approx(value, rel=1e-14), slot


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_matches_reference_at_awkward_sizes(case, kwargs, dtype, rng):
    _check(case, kwargs, [(n,) for n in SIZES] + [(), (3, 5)], dtype, rng)


class _LastReference:
    """The float64 reference of the last problem it was asked for: the large test runs each case
    on every target and thread count in turn, with the same problem (the rng fixture's seed), and
    the reference depends on neither. Computed again whenever the rule, the hyper-parameters or
    any input differ."""

    def __init__(self):
        self._last = None  # (rule, hyper-parameters, inputs as given, the reference's result)

    def __call__(self, rule, params, grads, hp):
        inputs = [np.array(a) for a in params] + [np.array(g) for step in grads for g in step]
        if not self._holds(rule, hp, inputs):
            self._last = (rule, dict(hp), inputs, reference.run(rule, params, grads, hp))
        expected, states = self._last[3]
        return [p.copy() for p in expected], [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
                                               for st in states]

    def _holds(self, rule, hp, inputs):
        if self._last is None:
            return False
        last_rule, last_hp, last_inputs, _ = self._last
        return last_rule is rule and last_hp == hp and len(last_inputs) == len(inputs) and all(
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(last_inputs, inputs))


_large_reference = _LastReference()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", fo.available_targets())
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_matches_reference_on_every_target_large(case, kwargs, target, threads, rng, restore_runtime):
    fo.set_target(target)
    fo.set_num_threads(threads)
    _check(case, kwargs, [(10**6 + 3,), (1000, 33)], np.float32, rng, steps=3, reference_run=_large_reference)


@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_mixed_dtypes_and_orders_in_one_optimizer(case, kwargs, rng):
    p32 = np.asarray(rng.standard_normal((40, 7)), np.float32, order="F")
    p64 = rng.standard_normal(50_000)
    g32 = [np.asarray(rng.standard_normal((40, 7)), np.float32, order="F") for _ in range(3)]
    g64 = [rng.standard_normal(50_000) for _ in range(3)]
    want32, _ = reference.run(case.reference, [p32], [[g] for g in g32], case.hyper(kwargs))
    want64, _ = reference.run(case.reference, [p64], [[g] for g in g64], case.hyper(kwargs))
    opt = case.cls([p32, p64], **kwargs)
    for a, b in zip(g32, g64):
        opt.step([a, b])
    np.testing.assert_allclose(p32, want32[0], **tolerance(np.float32, case.hyper(kwargs)["lr"], 3))
    np.testing.assert_allclose(p64, want64[0], **tolerance(np.float64))


@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_nan_gradient_touches_only_its_own_parameter(case, kwargs, rng):
    params, grads = make_problem(rng, [(64,), (64,)], np.float64, 2)
    clean = [p.copy() for p in params]
    grads[0][0][5] = np.nan
    expected, _ = reference.run(case.reference, clean[1:], [g[1:] for g in grads], case.hyper(kwargs))
    opt = case.cls(params, **kwargs)
    for g in grads:
        opt.step(g)
    assert np.isnan(params[0][5])
    assert np.isfinite(np.delete(params[0], 5)).all()
    np.testing.assert_allclose(params[1], expected[0], rtol=1e-12)


def _minimize(case, settings, gradient, x, steps, decay):
    """Run `settings` on `gradient`, shrinking every group's lr by `decay` per step."""
    opt = case.cls([x], **settings)
    for _ in range(steps):
        opt.step([gradient(x).astype(x.dtype)])
        for group in opt.param_groups:
            group["lr"] *= decay
    return x


# float64 with state of its dtype; float32 with its state stored as bfloat16, both roundings; float32
# with 8-bit state (min_8bit_size=1: these small arrays would keep float32 state; Rosenbrock's x and
# y share one block's absmax)
LAYOUTS = {"float64": (np.float64, {}),
           "bfloat16-state": (np.float32, {"state_dtype": "bfloat16"}),
           "bfloat16-stochastic": (np.float32, {"state_dtype": "bfloat16", "state_rounding": "stochastic"}),
           "int8-state": (np.float32, {"state_dtype": "int8", "min_8bit_size": 1})}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=arg_id)
def test_reaches_the_minimum_of_a_convex_quadratic(case, layout):
    # f(x) = 0.5 * sum(a * (x - c)^2), minimum at c
    dtype, options = LAYOUTS[layout]
    a, c = np.linspace(0.5, 2.0, 16), np.linspace(-1.0, 1.0, 16)
    x = _minimize(case, {**case.solve, **options}, lambda x: a * (x - c), np.full(16, 0.1, dtype), 4000, 0.999)
    np.testing.assert_allclose(x, c, atol=2e-2)


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosenbrock_gradient(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


# Ranger (β2 = 0.999 at a low lr) with bfloat16 state rounded to nearest stalls in the valley: its
# second moment cannot decay (test_nearest_rounding_cannot_decay_a_moment_stochastic_rounding_can);
# stochastic rounding is the cure, and is tested here.
ROSENBROCK = [(case, layout) for case in CASES for layout in LAYOUTS
              if not (case.name == "ranger" and layout == "bfloat16-state")]


@pytest.mark.parametrize(("case", "layout"), ROSENBROCK, ids=arg_id)
def test_makes_progress_on_rosenbrock(case, layout):
    dtype, options = LAYOUTS[layout]
    start = np.array([-1.2, 1.0], dtype)
    x = _minimize(case, {**(case.rosenbrock or case.solve), **options}, rosenbrock_gradient, start.copy(), 3000,
                  0.9999)
    assert rosenbrock(x) < 0.1 * rosenbrock(start), (x, rosenbrock(x))


def test_nearest_rounding_cannot_decay_a_moment_stochastic_rounding_can():
    """Why bfloat16 state offers stochastic rounding: with β2 = 0.999 and gradients that vanish,
    v ← 0.999·v changes v by less than half a bfloat16 ulp (2**-9), so rounding to nearest keeps
    v where it was forever; stochastic rounding decays it as 0.999**t in expectation."""
    def mean_v(opt):  # widened from the bit patterns: the arrays are uint16 without ml_dtypes
        bits = opt.state[0]["exp_avg_sq"].view(np.uint16).astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32).astype(np.float64).mean()

    def run(rounding):
        x = np.ones(100_000, np.float32)
        opt = fo.Adam([x], lr=0.0, betas=(0.9, 0.999), state_dtype="bfloat16", state_rounding=rounding)
        opt.step([np.ones_like(x)])  # v = 0.001 (rounded)
        first = mean_v(opt)
        for _ in range(500):
            opt.step([np.zeros_like(x)])
        return first, mean_v(opt)

    first, stalled = run("nearest")
    assert stalled == first
    first, decayed = run("stochastic")
    assert abs(decayed / first - 0.999**500) < 0.01 * 0.999**500
