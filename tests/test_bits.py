"""The same trajectory gives the same bytes on every instruction-set target and thread count,
prefetched or not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem
from registry import ARG_CASES, CASES, arg_id

SHAPES = [(10**6 + 3,), (7,), (1025,), (33, 31), ()]


ALWAYS, NEVER = 0, 2**62  # fo.set_prefetch_above: prefetch every step, or none

# Every target on one thread without prefetching and on two with: each code path of the sweep
# meets every target, at the cost of two runs per target.
SETTINGS = [(1, NEVER), (2, ALWAYS)]


def _final_bytes(case, kwargs, params, grad_steps, target, threads, prefetch_above):
    """Step `params` through `grad_steps` on one target, thread count and prefetch setting: the
    bytes of the parameters and of every state array after."""
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    opt = case.cls(params, **kwargs)
    for g in grad_steps:
        opt.step(g)
    state = [a for name in sorted(opt.state, key=str) for _, a in sorted(opt.state[name].items())]
    return [a.tobytes() for a in params + state]


def _trajectory(case, kwargs, dtype, target, threads, prefetch_above):
    params, grads = make_problem(np.random.default_rng(7), SHAPES, dtype, 5)
    return _final_bytes(case, kwargs, params, grads, target, threads, prefetch_above)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_same_bytes_on_every_target_thread_count_and_prefetch(case, kwargs, dtype, restore_runtime):
    _assert_same_everywhere(_trajectory, case, kwargs, dtype)


def _assert_same_everywhere(trajectory, case, kwargs, dtype):
    runs = {(t, n, p): trajectory(case, kwargs, dtype, t, n, p)
            for t, (n, p) in itertools.product(fo.available_targets(), SETTINGS)}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


def _offset_trajectory(case, kwargs, dtype, target, threads, prefetch_above):
    """Parameters that start 0..15 elements into 64-byte-aligned buffers, gradients one element
    further: the scalar head that aligns each vector body differs per target and array."""
    rng = np.random.default_rng(11)
    itemsize = np.dtype(dtype).itemsize

    def at_offset(values, offset):
        buf = np.empty(values.size + 64, dtype)
        start = (-buf.ctypes.data % 64) // itemsize + offset
        view = buf[start:start + values.size]
        view[...] = values
        return view

    sizes = [40_000 + 7 * k for k in range(16)]  # above the single-thread cut-off together
    params = [at_offset(rng.standard_normal(n), k) for k, n in enumerate(sizes)]
    grads = [[at_offset(rng.standard_normal(n), k + 1) for k, n in enumerate(sizes)] for _ in range(3)]
    return _final_bytes(case, kwargs, params, grads, target, threads, prefetch_above)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_same_bytes_whatever_the_alignment(case, kwargs, dtype, restore_runtime):
    _assert_same_everywhere(_offset_trajectory, case, kwargs, dtype)


# bfloat16 state, rounded to nearest even and stochastically: the same bytes too, state included
# (the generator's counters are the element's index within its parameter, never a piece's).
BFLOAT16 = [dict(state_dtype="bfloat16"), dict(state_dtype="bfloat16", state_rounding="stochastic", seed=3)]
BFLOAT16_CASES = [(case, {**kwargs, **layout}) for case in CASES for kwargs in case.arg_sets[:2] for layout in BFLOAT16]


@pytest.mark.parametrize(("case", "kwargs"), BFLOAT16_CASES, ids=arg_id)
def test_bfloat16_state_gives_the_same_bytes_everywhere(case, kwargs, restore_runtime):
    _assert_same_everywhere(_trajectory, case, kwargs, np.float32)


# The same first two argument sets of each rule as above: CI's sanitizer check runs this test, not
# the one above (whose million-element array adds minutes and no code path).
@pytest.mark.parametrize(("case", "kwargs"), BFLOAT16_CASES, ids=arg_id)
def test_bfloat16_state_gives_the_same_bytes_whatever_the_alignment(case, kwargs, restore_runtime):
    _assert_same_everywhere(_offset_trajectory, case, kwargs, np.float32)


# Adafactor and Muon step each array through the passes of matrix_passes.hpp: factored sums
# over rows of every length (a vector body and a tail), a matrix big enough for two threads and
# several blocks of rows, a batch of matrices, a vector, a scalar. Muon's Newton–Schulz products
# are NumPy's BLAS, the same within this process whatever fastoptim's target and threads.
MATRIX_SHAPES = {"big": (1100, 1000), "odd": (33, 31), "batch": (3, 17, 45), "vector": (10**5 + 3,), "scalar": ()}


def _per_array_trajectory(make, shapes, dtype, target, threads, prefetch_above):
    rng = np.random.default_rng(5)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(4)]
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    opt = make(params)
    for g in grads:
        opt.step({k: v for k, v in g.items() if k in opt.state})
    state = [np.asarray(v).tobytes() for k in sorted(opt.state) for _, v in sorted(opt.state[k].items())]
    return [params[k].tobytes() for k in sorted(params)] + state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda p: fo.Adafactor(p, lr=0.05, weight_decay=0.1),
    lambda p: fo.Adafactor(p, maximize=True, eps=(1e-20, 1e-3), max_grad_norm=1.0),
    lambda p: fo.Muon({k: v for k, v in p.items() if v.ndim == 2}, lr=0.02),
], ids=["adafactor", "adafactor-options", "muon"])
def test_adafactor_and_muon_give_the_same_bytes_everywhere(make, dtype, restore_runtime):
    runs = {(t, n, p): _per_array_trajectory(make, MATRIX_SHAPES, dtype, t, n, p)
            for t, (n, p) in itertools.product(fo.available_targets(), SETTINGS)}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


# Teams that split the pieces unevenly, and one with more threads than pieces: each thread owns a
# run of pieces and takes the others' leftovers (cpp/include/fastoptim/parallel.hpp, run_pieces),
# so every piece still runs exactly once. The update pass, the norm pass of LAMB and the gradient
# norm of max_grad_norm, whose runs are taken last piece first, over arrays that are not a whole
# number of pieces.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "options"), [("adamw", {}), ("lamb", {}), ("adamw", {"max_grad_norm": 1.0})])
def test_same_bytes_on_uneven_and_oversized_teams(name, options, dtype, restore_runtime):
    case = next(c for c in CASES if c.name == name)
    fo.set_thread_policy(backoff=False)  # every step on the team asked for

    def run(threads):
        fo.set_num_threads(threads)
        params, grads = make_problem(np.random.default_rng(5), [(200_003,), (70_001,), (33,)], dtype, 3)
        opt = case.cls(params, **case.arg_sets[-1], **options)
        for g in grads:
            opt.step(g)
        state = [a for key in sorted(opt.state, key=str) for _, a in sorted(opt.state[key].items())]
        return [a.tobytes() for a in params + state]

    alone = run(1)
    for threads in (3, 7, 64):
        assert run(threads) == alone, f"{threads} threads differ from one"
