"""The same trajectory gives the same bytes on every instruction-set target and thread count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem
from registry import ARG_CASES, arg_id

SHAPES = [(10**6 + 3,), (7,), (1025,), (33, 31), ()]


def _trajectory(case, kwargs, dtype, target, threads):
    fo.set_target(target)
    fo.set_num_threads(threads)
    params, grads = make_problem(np.random.default_rng(7), SHAPES, dtype, 5)
    opt = case.cls(params, **kwargs)
    for g in grads:
        opt.step(g)
    state = [a for name in sorted(opt.state, key=str) for _, a in sorted(opt.state[name].items())]
    return [a.tobytes() for a in params + state]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_same_bytes_on_every_target_and_thread_count(case, kwargs, dtype, restore_runtime):
    runs = {(t, n): _trajectory(case, kwargs, dtype, t, n)
            for t, n in itertools.product(fo.available_targets(), [1, 2])}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"
