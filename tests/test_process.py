"""Stepping leaves the process as it found it: floating-point modes, idle CPUs, fork and spawn."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _omp
from problems import make_problem
from registry import ARG_CASES

LARGE = 1 << 20  # far above the size below which a step stays on the calling thread


# ---- floating-point modes -------------------------------------------------------------------

def _main_thread_arithmetic() -> dict[str, object]:
    """What the FPU settings of this thread decide, as plain values."""
    f32, f64 = np.float32, np.float64
    return {
        # gradual underflow (no flush-to-zero, no denormals-are-zero), NumPy and Python floats
        "f32 subnormal": float(f32(1e-38) / f32(1e3)),
        "f64 subnormal": float(f64(1e-308) / f64(1e10)),
        "python subnormal": 1e-308 / 1e10,
        "f32 subnormal in": float(f32(1e-40) * f32(2)),
        # round to nearest, ties to even
        "f32 tie up": float(f32(1) + f32(2**-24)),                   # 1 + half an ulp -> 1
        "f32 tie even": float(f32(1 + 2**-23) + f32(2**-24)),        # 1 + 1.5 ulp -> 1 + 2 ulp
        "f32 tie down": float(f32(-1) - f32(2**-24)),                # -> -1
        "f64 tie up": float(f64(1) + f64(2**-53)),
        "python tie even": (1 + 2**-52) + 2**-53,
        "errors": np.geterr(),
    }


EXPECTED_ARITHMETIC = {
    "f32 subnormal": float(np.float32(1e-41)), "f64 subnormal": 1e-318, "python subnormal": 1e-318,
    "f32 subnormal in": 2 * float(np.float32(1e-40)),  # exact: doubling a subnormal
    "f32 tie up": 1.0, "f32 tie even": 1 + 2**-22, "f32 tie down": -1.0, "f64 tie up": 1.0,
    "python tie even": 1 + 2**-51,
}


def _worker_probe(dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start values and gradients whose plain SGD step (lr = 1: p − g, one exact product) is a
    subnormal result, a subnormal input or a rounding tie, repeated over a large array so every
    OpenMP thread of the step computes some."""
    info = np.finfo(dtype)
    ulp = float(info.eps)
    half = ulp / 2
    sub = float(info.smallest_normal) / 7  # a subnormal
    p = [0.0, sub, 1.0, 1 + ulp, -(1 + ulp), 1 + 2 * ulp, 0.0]
    g = [-sub, sub / 3, -half, half, -half, half, 2 * sub]
    want = [sub, np.asarray(sub, dtype) - np.asarray(sub / 3, dtype), 1.0, 1.0, -1.0, 1 + 2 * ulp, -2 * sub]
    reps = LARGE // len(p) + 1
    return (np.tile(np.asarray(p, dtype), reps), np.tile(np.asarray(g, dtype), reps),
            np.tile(np.asarray(want, dtype), reps))


def _check_worker_threads() -> None:
    for dtype in (np.float32, np.float64):
        p, g, want = _worker_probe(dtype)
        assert ((want != 0) & (np.abs(want) < np.finfo(dtype).smallest_normal)).any()  # subnormal results
        fo.SGD([p], lr=1.0).step([g])
        bad = np.flatnonzero(p != want)
        assert bad.size == 0, (f"{np.dtype(dtype).name}: {bad.size} elements differ from gradual underflow and "
                               f"round-to-nearest-even, first at {bad[:3]}: got {p[bad[:3]]}, want {want[bad[:3]]}")


def _step_every_rule() -> None:
    rng = np.random.default_rng(5)
    for case, kwargs in ARG_CASES:
        for dtype in (np.float32, np.float64):
            params, grads = make_problem(rng, [(LARGE // 4 + 3,), (7,), ()], dtype, 2)
            for step in grads:  # NaN, Inf, subnormals, overflow: every exception flag raised
                step[0][:5] = [np.nan, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal, np.finfo(dtype).max]
            opt = case.cls(params, **kwargs)
            for step in grads:
                opt.step(step)


def test_floating_point_modes_are_left_as_found(restore_runtime):
    fo.set_num_threads(2)
    before = _main_thread_arithmetic()
    assert {k: v for k, v in before.items() if k != "errors"} == EXPECTED_ARITHMETIC
    _check_worker_threads()
    _step_every_rule()
    assert _main_thread_arithmetic() == before
    _check_worker_threads()  # the OpenMP threads kept (or got back) the default modes too
    with np.errstate(all="raise"):  # no exception flag left set where NumPy would see it
        assert np.float64(1.5) * np.float64(2.0) == 3.0
        np.add(np.ones(3), 1.0)


# ---- idle CPUs after a step -----------------------------------------------------------------

_IDLE_PROBE = r"""
import json, os, resource, sys, time
import numpy as np
import fastoptim as fo

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

fo.set_num_threads(2)
n = 1 << 22
p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
opt = fo.SGD([p], lr=1e-3, momentum=0.9)
for _ in range(3):
    opt.step([g])
burns = []
for _ in range(5):
    opt.step([g])
    start = cpu()
    time.sleep(0.2)
    burns.append(cpu() - start)
if sys.argv[1:] == ["burns only"]:
    print(json.dumps(dict(burns=burns, spin=os.environ.get("GOMP_SPINCOUNT"),
                          policy=os.environ.get("OMP_WAIT_POLICY"))))
    sys.exit(0)

# NumPy's own threads right after a step, and after a short rest
a = np.random.default_rng(0).standard_normal((200, 200))
def matmul():
    start = time.perf_counter()
    a @ a
    return time.perf_counter() - start
q, gq = np.zeros(1 << 18, np.float32), np.ones(1 << 18, np.float32)
small = fo.SGD([q], lr=1e-3)
after, rested = [], []
for _ in range(100):
    small.step([gq])
    after.append(matmul())
    time.sleep(0.002)
    rested.append(matmul())
print(json.dumps(dict(burns=burns, after=float(np.median(after)), rested=float(np.median(rested)),
                      spin=os.environ.get("GOMP_SPINCOUNT"), policy=os.environ.get("OMP_WAIT_POLICY"))))
"""


def _run_idle_probe(*args: str, **env: str) -> dict[str, object]:
    """The probe in a fresh interpreter whose environment names no OpenMP wait settings except
    `env`, so what fastoptim chooses by itself is measured, whatever the runner sets."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    package_root = str(Path(fo.__file__).resolve().parent.parent)
    clean["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    clean.update(env)
    done = subprocess.run([sys.executable, "-c", _IDLE_PROBE, *args], env=clean, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_thread_pool_left_spinning_after_a_step():
    result = _run_idle_probe("burns only")
    print(f"\nidle probe, fastoptim's defaults: {result}")
    assert result["spin"] is None and result["policy"] is None  # import fastoptim sets neither
    burns = sorted(result["burns"])
    # CPU time the whole process used while its only thread slept 0.2 s right after a step. A
    # spinning pool burns in every window (the control below: 0.2 s each); one window of five may
    # see a one-off burst (seen once in CI: 26 ms in the first window, 0.1 ms in the other four).
    assert burns[-2] < 0.020, f"threads kept spinning after steps: {burns} s of CPU per 0.2 s sleep"


def test_the_short_spin_leaves_blas_its_cores_right_after_a_step():
    """docs/arrays.md's recipe for BLAS between steps: NumPy's BLAS right after a step is not
    slowed down by OpenMP threads busy-waiting (generous: the machine may be shared; with
    OMP_WAIT_POLICY=active the slowdown is far larger where BLAS needs the cores)."""
    result = _run_idle_probe(GOMP_SPINCOUNT=_omp.SHORT_SPIN)
    print(f"\nidle probe, GOMP_SPINCOUNT={_omp.SHORT_SPIN}: {result}")
    assert result["spin"] == _omp.SHORT_SPIN
    assert result["after"] < 2.5 * result["rested"], result


def test_the_idle_probe_sees_a_spinning_pool():
    """Control: with threads told to busy-wait, the same probe measures the spinning, so the
    bound above can fail."""
    result = _run_idle_probe("burns only", OMP_WAIT_POLICY="active")
    print(f"\nidle probe, OMP_WAIT_POLICY=active: {result}")
    assert min(result["burns"]) > 0.020, result


# ---- fork and spawn -------------------------------------------------------------------------

def _child_steps(n: int) -> None:
    """In a child process: a fresh optimizer's step, checked. Exit code 0 when right."""
    p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
    opt = fo.Adam([p], lr=0.1)
    opt.step([g])
    if not np.all(p == np.float32(-0.1)):
        sys.exit(3)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
@pytest.mark.parametrize("size", [100, LARGE], ids=["small step", "multithreaded step"])
def test_child_process_steps_after_a_multithreaded_step_in_the_parent(start_method, size, restore_runtime):
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method!r} start method on this platform")
    fo.set_num_threads(2)
    p, g = np.zeros(LARGE, np.float32), np.ones(LARGE, np.float32)
    fo.SGD([p], lr=1.0).step([g])  # the parent's OpenMP threads now exist
    assert (p == -1).all()
    context = multiprocessing.get_context(start_method)
    child = context.Process(target=_child_steps, args=(size,))
    with warnings.catch_warnings():  # Python 3.12+ warns that fork() in a threaded process may deadlock
        warnings.simplefilter("ignore", DeprecationWarning)
        child.start()
    child.join(20)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"a {start_method!r} child's {size}-element step did not finish in 20 s: deadlock (GNU "
                    "OpenMP's thread pool does not survive fork(); the child waits on the parent's threads)")
    assert child.exitcode == 0, f"the child exited with {child.exitcode}"
    fo.SGD([p], lr=1.0).step([g])  # and the parent still steps on its threads
    assert (p == -2).all()
