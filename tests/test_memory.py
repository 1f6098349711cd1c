"""A step allocates nothing: no NumPy or Python memory, and no growth of the process's peak RSS."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from registry import CASES

# float32 and float64 parameters with state of their dtypes; float32 ones with bfloat16 state
LAYOUTS = {"native": {}, "bfloat16": {"state_dtype": "bfloat16", "state_rounding": "stochastic"}}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_steps_allocate_no_python_or_numpy_memory(case, layout, rng):
    second = (64, 33) if layout == "native" else (64, 31)
    params = [rng.standard_normal(50_000).astype(np.float32), rng.standard_normal(second)]
    if layout != "native":
        params[1] = params[1].astype(np.float32)
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    opt = case.cls(params, **case.arg_sets[-1], **LAYOUTS[layout])
    opt.step(grads)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(100):
            opt.step(grads)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a temporary the size of one parameter would be 200 kB; allow interpreter noise only
    assert peak - before < 16_384, f"peak grew by {peak - before} bytes over 100 steps"
    assert current - before < 4_096


def test_peak_rss_after_100_steps_equals_that_after_the_first():
    code = textwrap.dedent("""
        import resource, numpy as np, fastoptim as fo
        n = 20_000_000  # 80 MB per array: one temporary would show at once
        p, g = np.ones(n, np.float32), np.full(n, 0.5, np.float32)
        opt = fo.Adam([p], amsgrad=True)
        opt.step([g])
        first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(100):
            opt.step([g])
        print(first, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    first, last = map(int, run.stdout.split())
    assert last - first < 2048, f"peak RSS grew from {first} kB to {last} kB"  # ru_maxrss is in kB


@pytest.mark.parametrize("offset", range(0, 64, 4))
@pytest.mark.parametrize("order", ["C", "F"])
def test_state_starts_at_its_parameters_offset_in_a_cache_line(offset, order):
    """The kernels align the parameter's vector body; state at the same offset aligns with it."""
    import fastoptim as fo

    buffer = np.zeros(64 * 64 + 32, np.float32)
    start = (-buffer.ctypes.data % 64 + offset) // 4
    param = buffer[start:start + 64 * 64].reshape(64, 64, order=order)
    opt = fo.Adam([param], amsgrad=True)
    opt.step([np.ones_like(param)])
    for name, state in opt.state[0].items():
        assert state.ctypes.data % 64 == param.ctypes.data % 64, name
        assert state.shape == param.shape and state.flags.f_contiguous == param.flags.f_contiguous, name
        assert np.all(state != 0), name  # allocated as zeros, then stepped once with g = 1
