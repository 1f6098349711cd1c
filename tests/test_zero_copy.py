"""Parameters are updated in place, whatever their layout, and nothing outside them changes."""

from __future__ import annotations

import numpy as np
import pytest

import fastoptim as fo
import reference
from problems import tolerance
from registry import ARG_CASES, arg_id


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_sentinels_around_a_sliced_parameter_stay_untouched(case, kwargs, dtype, rng):
    for n in (1, 7, 8, 17, 1025, 40_001):
        buffer = np.full(n + 64, 12345.0, dtype=dtype)
        param = buffer[32:32 + n]  # a contiguous view into a larger buffer
        param[:] = rng.standard_normal(n)
        start = param.copy()
        grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
        opt = case.cls([param], **kwargs)
        for g in grads:
            opt.step([g])
        want, _ = reference.run(case.reference, [start], [[g] for g in grads], case.hyper(kwargs))
        assert (buffer[:32] == 12345.0).all() and (buffer[32 + n:] == 12345.0).all()
        np.testing.assert_allclose(param, want[0], **tolerance(dtype, case.hyper(kwargs)["lr"], 3))
        assert np.shares_memory(param, buffer)


@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_unaligned_fortran_zero_d_and_empty_arrays(case, kwargs, rng):
    raw = np.zeros(4 * 1001 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float32)  # misaligned by one byte
    assert not unaligned.flags.aligned
    unaligned[:] = rng.standard_normal(1001)
    fortran = np.asfortranarray(rng.standard_normal((31, 17)))
    zero_d = np.array(0.5)
    empty = np.zeros((0, 3))
    params = [unaligned, fortran, zero_d, empty]
    starts = [p.copy() for p in params]
    def like(p):
        return np.asarray(rng.standard_normal(p.shape), p.dtype, order="C" if p.flags.c_contiguous else "F")

    grads = [[like(p) for p in params] for _ in range(2)]
    opt = case.cls(params, **kwargs)
    for g in grads:
        opt.step(g)
    want, _ = reference.run(case.reference, starts, grads, case.hyper(kwargs))
    for p, w in zip(params, want):
        np.testing.assert_allclose(p, w, **tolerance(p.dtype, case.hyper(kwargs)["lr"], 2))
    assert unaligned.base is not None and np.shares_memory(unaligned, raw)


def test_state_is_allocated_once_in_the_parameters_dtype_and_layout(rng):
    p = np.asfortranarray(rng.standard_normal((8, 5)).astype(np.float32))
    opt = fo.Adam([p], amsgrad=True)
    slots = dict(opt.state[0])
    for name, array in slots.items():
        assert array.dtype == np.float32 and array.flags.f_contiguous, name
    for _ in range(3):
        opt.step([np.asfortranarray(rng.standard_normal((8, 5)).astype(np.float32))])
    assert all(opt.state[0][k] is v for k, v in slots.items())
