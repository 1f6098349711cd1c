"""Property tests: every rule on random shapes, layouts, hyper-parameters and hostile gradients.

Each example draws 1-3 parameters (0-d, empty, odd sizes up to a few thousand, 1-3 dimensions,
C or F order, sometimes misaligned), a few steps of gradients with NaN, ±Inf, subnormals,
±1e30, ±1e-30 and signed zeros mixed into normal values, valid random hyper-parameters
(the registry's ``random_args``) and a target, then checks:

(a) values: the kernel matches the float64 reference within ``problems.tolerance``, whose
    relative part is taken of the largest magnitude the element held (see ``_explained``);
(b) non-finite values: NaN exactly where the reference has NaN, ±Inf exactly where it has the
    same ±Inf (``_explained`` checks (a) and (b) together, element by element);
(c) nothing else moves: parameters and gradients live inside larger buffers with guard bands
    of sentinels, which must keep their values; the gradients must keep their bytes.

float32 and the exact math. The float64 reference is computed from the same float32-rounded
inputs, but float32 *arithmetic* legitimately departs from it where a value leaves float32's
range: (1e30)² overflows to inf (Adam's v, Adagrad's sum, LARS' and LAMB's norms, which then
change every element of the array), (1e-30)² and subnormal products underflow to 0 (Rprop's
g·g_prev, which decides the step size), centered RMSprop gets inf − inf = NaN, and Lion's
sign(β1·m + (1 − β1)·g) may flip where its argument is a rounding error away from 0. No
tolerance on the float64 reference can admit those, and masking "|ref| ≥ 1e30" would miss most
of them (the overflow is in an intermediate, the result is small). So for float32 each element
must be explained by the float64 reference *or* by the same reference formulas evaluated in
float32 arithmetic (``_run``): an honest evaluation of the same rule, so a kernel bug
still shows up as an element neither explains. For float64 only the float64 reference counts.
The number of elements that needed the float32 explanation is reported per rule.
"""

from __future__ import annotations

import collections
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastoptim as fo
import reference
from problems import tolerance
from registry import CASES, arg_id

# Examples per (rule, dtype): 17 rules x 2 dtypes x 100 examples run in about 30 s on one core.
# A deeper search: FASTOPTIM_PROPERTY_EXAMPLES=2000 (with pytest-xdist's -n on a larger machine).
EXAMPLES = int(os.environ.get("FASTOPTIM_PROPERTY_EXAMPLES", "100"))
# What ran, for the report: (rule, dtype) -> examples, elements checked, elements explained
# only by the float32-arithmetic reference.
STATS: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)

SENTINEL = -1234.5678  # what the guard bands hold, before and after
KINDS = ("nan", "inf", "-inf", "subnormal", "huge", "tiny", "zero")


def _special(kind: str, dtype: type, rng: np.random.Generator, count: int) -> np.ndarray:
    info = np.finfo(dtype)
    sign = np.where(rng.integers(2, size=count) == 1, 1.0, -1.0)
    if kind == "nan":
        return np.full(count, np.nan)
    if kind == "inf":
        return np.full(count, np.inf)
    if kind == "-inf":
        return np.full(count, -np.inf)
    if kind == "subnormal":  # between the smallest subnormal and the smallest normal
        return sign * np.asarray(info.smallest_normal, dtype) * rng.uniform(0, 1, count).astype(dtype) \
            + sign * np.asarray(info.smallest_subnormal, dtype)
    if kind == "huge":
        return sign * 1e30 * rng.uniform(0.5, 2, count)
    if kind == "tiny":
        return sign * 1e-30 * rng.uniform(0.5, 2, count)
    return sign * 0.0  # signed zeros


def _guarded(values: np.ndarray, order: str, guard: int, misalign: int) -> tuple[np.ndarray, np.ndarray]:
    """`values` copied into a contiguous view of a larger buffer with `guard` sentinels each
    side; the buffer starts `misalign` bytes past an allocation (0: aligned to the element)."""
    dtype, n = values.dtype, values.size
    itemsize = dtype.itemsize
    raw = np.empty((n + 2 * guard) * itemsize + misalign, np.uint8)
    buffer = raw[misalign:].view(dtype)
    buffer[:] = SENTINEL
    array = buffer[guard:guard + n].reshape(values.shape, order=order)
    array[...] = values
    assert n == 0 or np.shares_memory(array, buffer)
    assert array.flags.c_contiguous if order == "C" else array.flags.f_contiguous
    return array, buffer


def _run(rule, params, grads_per_step, hyper, dtype):
    """reference.run in `dtype` arithmetic, also returning, per element, the largest finite
    magnitude the parameter held along the way (its start included).

    In float64 this is reference.run. In float32 the reference formulas run on float32 arrays:
    NumPy 2 keeps Python-float coefficients weak, so the arithmetic stays float32 (where a
    formula goes through a NumPy float64 scalar the last operations are float64, which only
    brings it closer to the exact math)."""
    ps = [np.array(p, dtype=dtype) for p in params]
    states: list[dict] = [{} for _ in ps]
    largest = [_finite_abs(p) for p in ps]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g, state) in enumerate(zip(ps, grads, states)):
            rule(p, np.array(g, dtype=dtype), state, hyper, t)
            assert p.dtype == dtype
            largest[i] = np.maximum(largest[i], _finite_abs(p))
    return ps, largest


def _finite_abs(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), np.abs(a.astype(np.float64)), 0.0)


def _explained(got: np.ndarray, want: np.ndarray, largest: np.ndarray, tol: dict[str, float]) -> np.ndarray:
    """Per element: the same NaN, the same ±Inf, or finite values within atol + rtol·largest.

    The relative part is taken of the largest magnitude the element held, not of its final
    value: an element that went to 1e27 (a 1e30 gradient) and came back to 1e24 as later steps
    cancelled carries float32's rounding of 1e27, ~1e20, which no tolerance relative to 1e24
    admits. For elements that stay O(1) this is problems.tolerance unchanged."""
    wide = got.astype(np.float64)
    same_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(want) & (wide == want)
    both_finite = np.isfinite(got) & np.isfinite(want)
    close = np.abs(np.where(both_finite, wide - want, 0.0)) <= tol["atol"] + tol["rtol"] * largest
    return same_nan | same_inf | (both_finite & close)


def _shape(data) -> tuple[int, ...]:
    ndim = data.draw(st.integers(0, 3), label="ndim")
    if ndim == 0:
        return ()
    if ndim == 1:
        return (data.draw(st.one_of(st.integers(0, 40), st.integers(0, 3000)), label="n"),)
    high = 60 if ndim == 2 else 15
    return tuple(data.draw(st.lists(st.integers(0, high), min_size=ndim, max_size=ndim), label="dims"))


def _check_example(case, dtype, data) -> None:
    key = (case.name, np.dtype(dtype).name)
    STATS[key]["examples"] += 1
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    hyper = case.hyper(kwargs)
    steps = data.draw(st.integers(1, 4), label="steps")
    count = data.draw(st.integers(1, 3), label="params")
    shapes = [_shape(data) for _ in range(count)]
    orders = [data.draw(st.sampled_from("CF"), label="order") for _ in range(count)]
    guard = data.draw(st.integers(1, 17), label="guard")
    misalign = data.draw(st.sampled_from([0, 0, 0, 1, 3]), label="misalign")
    kinds = sorted(data.draw(st.sets(st.sampled_from(KINDS)), label="special kinds"))
    fraction = data.draw(st.sampled_from([0.001, 0.01, 0.1, 0.5]), label="special fraction") if kinds else 0.0
    param_kind = data.draw(st.sampled_from(["normal", "normal", "some zeros", "all zeros"]), label="param kind")
    target = data.draw(st.sampled_from(fo.available_targets()), label="target")
    fo.set_target(target)

    def start_values(shape):
        values = rng.standard_normal(shape)
        if param_kind == "some zeros":
            values = np.where(rng.random(shape) < 0.3, 0.0, values)
        elif param_kind == "all zeros":
            values = np.zeros(shape)
        return np.asarray(values, dtype)

    def gradient(shape):
        values = rng.standard_normal(shape)
        flat = values.reshape(-1)
        if kinds and flat.size:
            where = np.flatnonzero(rng.random(flat.size) < fraction)
            picks = rng.choice(len(kinds), size=where.size)
            for index, kind in enumerate(kinds):
                at = where[picks == index]
                flat[at] = _special(kind, dtype, rng, at.size)
        with np.errstate(over="ignore", under="ignore"):
            return np.asarray(values, dtype)

    params, param_buffers, grads, grad_buffers = [], [], [], []
    for shape, order in zip(shapes, orders):
        p, buf = _guarded(start_values(shape), order, guard, misalign)
        params.append(p)
        param_buffers.append(buf)
    for _ in range(steps):
        pairs = [_guarded(gradient(shape), order, guard, misalign) for shape, order in zip(shapes, orders)]
        grads.append([g for g, _ in pairs])
        grad_buffers.append([b for _, b in pairs])
    starts = [p.copy() for p in params]
    grad_bytes = [[b.tobytes() for b in bufs] for bufs in grad_buffers]

    opt = case.cls({f"p{i}": p for i, p in enumerate(params)}, **kwargs)
    for step_grads in grads:
        opt.step({f"p{i}": g for i, g in enumerate(step_grads)})

    # (c) the guard bands of every parameter, and every gradient buffer, are untouched
    for i, (p, buf) in enumerate(zip(params, param_buffers)):
        n = p.size
        guards = np.concatenate([buf[:guard], buf[guard + n:]])
        assert (guards == np.asarray(SENTINEL, dtype)).all(), f"p{i}: a guard element changed: {guards}"
        assert n == 0 or np.shares_memory(p, buf)
    for step, bufs in enumerate(grad_buffers):
        for i, buf in enumerate(bufs):
            assert buf.tobytes() == grad_bytes[step][i], f"gradient of p{i} at step {step + 1} changed"

    # (a) and (b)
    tol = tolerance(dtype, hyper["lr"], steps)
    with np.errstate(all="ignore"):
        exact, largest = _run(case.reference, starts, grads, hyper, np.float64)
        in_float32, largest32 = (_run(case.reference, starts, grads, hyper, dtype) if dtype == np.float32
                                 else (None, None))
        for i, (got, want) in enumerate(zip(params, exact)):
            ok = _explained(got, want, largest[i], tol)
            STATS[key]["elements"] += got.size
            if in_float32 is not None and not ok.all():
                by_float32 = _explained(got, in_float32[i], np.maximum(largest[i], largest32[i]), tol)
                STATS[key]["explained only by float32 arithmetic"] += int((by_float32 & ~ok).sum())
                ok |= by_float32
            if not ok.all():
                bad = np.flatnonzero(~np.ravel(ok))[:5]

                def flat(a):
                    return np.ravel(a)  # logical (C) order, whatever the layout
                grads_at = [flat(step[i])[bad] for step in grads]
                detail = {
                    "rule": case.name, "kwargs": kwargs, "dtype": np.dtype(dtype).name, "target": target,
                    "param": f"p{i}", "shape": got.shape, "flat index": bad.tolist(),
                    "start": flat(starts[i])[bad].tolist(), "grads per step": [g.tolist() for g in grads_at],
                    "kernel": flat(got)[bad].tolist(), "float64 reference": flat(want)[bad].tolist(),
                }
                if in_float32 is not None:
                    detail["float32 reference"] = flat(in_float32[i])[bad].tolist()
                pytest.fail(f"{int((~ok).sum())} element(s) explained by no reference: {detail}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=arg_id)
def test_random_shapes_hyper_parameters_and_special_values(case, dtype, restore_runtime):
    settings_ = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    @settings_
    @given(data=st.data())
    def check(data):
        _check_example(case, dtype, data)

    check()
    stats = STATS[(case.name, np.dtype(dtype).name)]
    # Hypothesis runs max_examples examples unless it exhausts the search space, which it can't here.
    assert stats["examples"] >= EXAMPLES, dict(stats)
    print(f"{case.name}/{np.dtype(dtype).name}: {dict(stats)}")


def test_the_float32_reference_really_computes_in_float32():
    """The escape hatch above is honest: (1e30)² overflows in it, as it does in any float32 code."""
    with np.errstate(all="ignore"):
        ps, _ = _run(reference.adagrad, [np.zeros(2, np.float32)], [[np.array([1e30, 1.0], np.float32)]],
                     dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                          maximize=False), np.float32)
        exact, _ = reference.run(reference.adagrad, [np.zeros(2)], [[np.array([1e30, 1.0])]],
                                 dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                                      eps=1e-10, maximize=False))
    assert ps[0][0] == 0.0  # 1e30 / sqrt(inf) = 0 in float32
    assert math.isclose(exact[0][0], -0.1)
