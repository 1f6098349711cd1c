"""Arrays of more than 2**31 elements: every index is 64-bit.

Opt-in, since each test needs 17-26 GB of memory and a minute: run with FASTOPTIM_HUGE_TESTS=1
on a machine with enough free memory (the tests skip, saying why, where it is short).
Memory is kept to the optimizer's own arrays: np.empty, filled in slices, checked in slices.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastoptim as fo

N = 2**31 + 17  # float32: 8.6 GB per array
CHUNK = 1 << 26
# Where a 32-bit index would break: the start (where a wrapped index lands), 2**31 - 1 (the
# largest int32), 2**31 (the first index it cannot hold) and the end, 17 elements further.
PROBES = np.unique(np.concatenate([np.arange(0, 40), np.arange(2**31 - 40, N)]))

pytestmark = pytest.mark.skipif(os.environ.get("FASTOPTIM_HUGE_TESTS") != "1",
                                reason="opt-in: set FASTOPTIM_HUGE_TESTS=1 to step float32 arrays of 2**31 + 17 "
                                       "elements (17-26 GB of memory)")


def _need_memory(arrays: int) -> None:
    needed = arrays * N * 4
    try:
        with open("/proc/meminfo") as meminfo:
            available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return  # not Linux: trust the opt-in
    if available < needed * 1.1:
        pytest.skip(f"needs {needed / 2**30:.1f} GiB of free memory, {available / 2**30:.1f} GiB available")


def _chunks():
    for start in range(0, N, CHUNK):
        yield slice(start, min(start + CHUNK, N))


def _position_values(index: np.ndarray) -> np.ndarray:
    """Distinct, exactly representable values that tell neighbouring positions apart."""
    return ((index % 1000) + 1).astype(np.float32) / np.float32(8)


def _fill(array: np.ndarray, value: float, probe_values: np.ndarray) -> None:
    for part in _chunks():
        array[part] = value
    array[PROBES] = probe_values


def _assert_everywhere(array: np.ndarray, value: np.float32, probe_values: np.ndarray, what: str) -> None:
    """`value` everywhere outside PROBES, `probe_values` at them; checked slice by slice."""
    got = array[PROBES]
    bad = np.flatnonzero(got != probe_values)
    assert bad.size == 0, (f"{what}: at indices {PROBES[bad[:5]].tolist()} got {got[bad[:5]].tolist()}, "
                           f"want {probe_values[bad[:5]].tolist()}")
    saved = got.copy()
    array[PROBES] = value  # compare the rest in slices without a mask the size of the array
    try:
        for part in _chunks():
            wrong = np.flatnonzero(array[part] != value)
            assert wrong.size == 0, (f"{what}: {wrong.size} elements in [{part.start}, {part.stop}) differ from "
                                     f"{value}, first at {part.start + wrong[0]}: {array[part.start + wrong[0]]}")
    finally:
        array[PROBES] = saved


@pytest.fixture
def huge_pair(restore_runtime):
    """A parameter and a gradient of N float32 elements: 0.5 and 1 except at PROBES."""
    _need_memory(2)
    p = np.empty(N, np.float32)
    g = np.empty(N, np.float32)
    _fill(p, 0.5, _position_values(PROBES))
    _fill(g, 1.0, _position_values(PROBES + 7) * np.float32(3))
    yield p, g
    del p, g


def test_sgd_steps_every_element_of_an_array_beyond_2_to_the_31(huge_pair):
    p, g = huge_pair
    lr = np.float32(0.25)
    p_probe, g_probe = p[PROBES].copy(), g[PROBES].copy()
    opt = fo.SGD([p], lr=float(lr))
    fo.set_num_threads(max(2, fo.get_num_threads()))
    opt.step([g])  # on OpenMP threads: the cut points of the index space are 64-bit too
    want_probe = p_probe - lr * g_probe
    _assert_everywhere(p, np.float32(0.5) - lr, want_probe, "after a multithreaded step")
    fo.set_num_threads(1)
    opt.step([g])  # one thread, one loop over all N elements
    _assert_everywhere(p, np.float32(0.5) - lr - lr, want_probe - lr * g_probe, "after a single-threaded step")
    _assert_everywhere(g, np.float32(1.0), g_probe, "the gradient")  # read, never written


def test_lars_norms_cover_every_element_of_an_array_beyond_2_to_the_31(huge_pair):
    """LARS measures ‖w‖ and ‖g‖ over 4096-element blocks before it steps: the block index
    space and the partial sums are 64-bit too (a wrap would drop or double blocks: wrong norms)."""
    p, g = huge_pair
    _need_memory(1)  # the momentum buffer, beside the pair already in memory
    p_probe, g_probe = p[PROBES].copy(), g[PROBES].copy()
    rest = N - PROBES.size
    w_norm = np.sqrt(rest * 0.25 + np.sum(p_probe.astype(np.float64) ** 2))
    g_norm = np.sqrt(rest * 1.0 + np.sum(g_probe.astype(np.float64) ** 2))
    lr, tc = 1.0, 1e-3
    local = tc * w_norm / g_norm
    opt = fo.LARS([p], lr=lr, momentum=0.0, weight_decay=0.0, trust_coefficient=tc)
    opt.step([g])
    got = p[PROBES].astype(np.float64)
    want = p_probe - lr * local * g_probe.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg="LARS at the probes: the norms are wrong")
    # elsewhere 0.5 − lr·local·1, one float32 value
    step = np.float32(np.float32(lr) * np.float32(local))
    value = np.float32(0.5) - step
    assert abs(float(value) - (0.5 - lr * local)) < 1e-6
    saved = p[PROBES].copy()
    p[PROBES] = value
    try:
        for part in _chunks():
            chunk = p[part]
            spread = max(abs(float(chunk.min()) - float(value)), abs(float(chunk.max()) - float(value)))
            assert spread < 1e-6, f"elements in [{part.start}, {part.stop}) are up to {spread} away from {value}"
    finally:
        p[PROBES] = saved
