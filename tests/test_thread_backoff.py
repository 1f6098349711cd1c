"""The thread backoff (cpp/src/thread_backoff.hpp): after two cold steps in a row whose threads did
not share the work, or (where a lone step takes under 200 us) took over 90% of the latest cold
lone step's time, cold steps run on the calling thread for a run of 4, 8, ... 64, each ended by
one try on every thread; a cold step shared and not slower starts over; warm steps always get
every thread. Timed steps under 200 us take a lone reference step at the second cold step and
after every 256 cold steps on several threads; one that took over 8 lone steps' time (a stall)
sends the next 64 cold steps to one thread at once.
Its bits are the thread counts' bits, which tests/test_bits.py compares."""

from __future__ import annotations

import time

import numpy as np
import pytest
from child import run_python

import fastoptim as fo
from fastoptim import _core

COLD, WARM = True, False
UNSHARED = dict(pieces=10, busiest=9, parallel=True)  # one thread took 9 of 10 pieces
SHARED = dict(pieces=10, busiest=5, parallel=True)
LONE = dict(pieces=10, busiest=10, parallel=False)  # ran on one thread


def cold_threads(backoff: _core._ThreadBackoff, steps: int) -> list[int]:
    """Threads granted to `steps` cold steps asking for 2, the tries recorded as unshared."""
    granted = []
    for _ in range(steps):
        threads = backoff.threads_for_step(2, COLD)
        granted.append(threads)
        if threads == 2:
            backoff.record(COLD, **UNSHARED)
    return granted


def test_a_new_backoff_grants_every_thread() -> None:
    assert _core._ThreadBackoff().threads_for_step(2, COLD) == 2


def test_unshared_cold_steps_double_the_lone_run_up_to_64() -> None:
    granted = cold_threads(_core._ThreadBackoff(), 2 + 4 + 1 + 8 + 1 + 16 + 1 + 32 + 1 + 64 + 1 + 64 + 1)
    tries = [i for i, t in enumerate(granted) if t == 2]
    assert np.diff(tries).tolist() == [1, 5, 9, 17, 33, 65, 65]
    assert set(granted) == {1, 2}


def test_one_unshared_cold_step_alone_is_taken_for_chance() -> None:
    backoff = _core._ThreadBackoff()
    for _ in range(3):
        backoff.record(COLD, **UNSHARED)
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED)  # breaks the row
        assert backoff.threads_for_step(2, COLD) == 2


def test_a_shared_try_starts_it_all_over() -> None:
    backoff = _core._ThreadBackoff()
    assert cold_threads(backoff, 2 + 4 + 1 + 8) == [2, 2] + [1] * 4 + [2] + [1] * 8
    assert backoff.threads_for_step(2, COLD) == 2
    backoff.record(COLD, **SHARED)
    backoff.record(COLD, **UNSHARED)
    assert backoff.threads_for_step(2, COLD) == 2  # one unshared step after a shared one: no run
    backoff.record(COLD, **UNSHARED)
    assert [backoff.threads_for_step(2, COLD) for _ in range(5)] == [1, 1, 1, 1, 2]  # 4 again, not 16


def test_four_fifths_of_the_pieces_still_counts_as_shared() -> None:
    backoff = _core._ThreadBackoff()
    for _ in range(2):
        backoff.record(COLD, pieces=10, busiest=8, parallel=True)
    assert backoff.threads_for_step(2, COLD) == 2
    for _ in range(2):
        backoff.record(COLD, pieces=5, busiest=5, parallel=True)
    assert backoff.threads_for_step(2, COLD) == 1


def unshared_twice(backoff: _core._ThreadBackoff) -> None:
    for _ in range(2):
        backoff.record(COLD, **UNSHARED)


def test_warm_steps_get_every_thread_and_leave_the_run_alone() -> None:
    backoff = _core._ThreadBackoff()
    for _ in range(5):
        backoff.record(WARM, **UNSHARED)  # back to back: says nothing of waking threads
    assert backoff.threads_for_step(2, COLD) == 2
    unshared_twice(backoff)
    for _ in range(10):
        assert backoff.threads_for_step(2, WARM) == 2
        backoff.record(WARM, **SHARED)
    assert [backoff.threads_for_step(2, COLD) for _ in range(5)] == [1, 1, 1, 1, 2]


def test_steps_that_ran_on_one_thread_leave_the_run_alone() -> None:
    backoff = _core._ThreadBackoff()
    for _ in range(2):
        backoff.record(COLD, pieces=10, busiest=10, parallel=False)  # small, or one thread asked
    assert backoff.threads_for_step(2, COLD) == 2
    unshared_twice(backoff)
    assert backoff.threads_for_step(1, COLD) == 1  # one thread asked: the run is not spent
    assert [backoff.threads_for_step(2, COLD) for _ in range(5)] == [1, 1, 1, 1, 2]


def timed_with_reference(lone_seconds: float) -> _core._ThreadBackoff:
    """A backoff whose first cold step ran shared on 2 threads and whose reference step, alone,
    took `lone_seconds`."""
    backoff = _core._ThreadBackoff()
    assert backoff.threads_for_step(2, COLD) == 2  # the first step also touches new state pages
    backoff.record(COLD, **SHARED, seconds=lone_seconds / 2)
    assert backoff.threads_for_step(2, COLD) == 1  # the reference
    backoff.record(COLD, **LONE, seconds=lone_seconds)
    return backoff


def test_timed_steps_take_a_lone_reference_at_the_second_cold_step() -> None:
    backoff = timed_with_reference(100e-6)
    for _ in range(10):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED, seconds=60e-6)  # faster than alone


def test_shared_steps_slower_than_the_lone_reference_fail() -> None:
    backoff = timed_with_reference(100e-6)
    for _ in range(2):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED, seconds=120e-6)
    assert [backoff.threads_for_step(2, COLD) for _ in range(5)] == [1, 1, 1, 1, 2]


@pytest.mark.parametrize(("seconds", "fails"), [(95e-6, True), (91e-6, True), (89e-6, False)])
def test_shared_steps_must_save_a_tenth_of_the_lone_time(seconds: float, fails: bool) -> None:
    backoff = timed_with_reference(100e-6)
    for _ in range(2):
        backoff.record(COLD, **SHARED, seconds=seconds)
    assert backoff.threads_for_step(2, COLD) == (1 if fails else 2)


def test_one_slower_shared_step_alone_is_taken_for_chance() -> None:
    backoff = timed_with_reference(100e-6)
    backoff.record(COLD, **SHARED, seconds=120e-6)
    assert backoff.threads_for_step(2, COLD) == 2
    backoff.record(COLD, **SHARED, seconds=60e-6)
    backoff.record(COLD, **SHARED, seconds=120e-6)
    assert backoff.threads_for_step(2, COLD) == 2


def test_the_lone_runs_refresh_the_reference() -> None:
    backoff = timed_with_reference(100e-6)
    for _ in range(2):
        backoff.record(COLD, **SHARED, seconds=120e-6)
    for _ in range(4):
        assert backoff.threads_for_step(2, COLD) == 1
        backoff.record(COLD, **LONE, seconds=180e-6)  # the machine got slower
    assert backoff.threads_for_step(2, COLD) == 2
    backoff.record(COLD, **SHARED, seconds=120e-6)  # faster than the new reference: starts over
    backoff.record(COLD, **SHARED, seconds=190e-6)
    assert backoff.threads_for_step(2, COLD) == 2  # one slower step: no run


def test_the_reference_is_taken_again_after_256_cold_shared_steps() -> None:
    backoff = timed_with_reference(100e-6)
    for _ in range(256):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED, seconds=60e-6)
    for _ in range(3):
        assert backoff.threads_for_step(2, WARM) == 2  # warm steps never wait for it
    assert backoff.threads_for_step(2, COLD) == 1
    backoff.record(COLD, **LONE, seconds=100e-6)
    assert backoff.threads_for_step(2, COLD) == 2


def test_long_steps_take_no_reference() -> None:
    """Waking threads costs a step of 500 us little: no lone step to time them against."""
    backoff = _core._ThreadBackoff()
    for _ in range(300):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED, seconds=500e-6)


def test_steps_longer_than_200_us_alone_are_not_judged_by_time() -> None:
    backoff = timed_with_reference(300e-6)  # the first shared step took 150 us: a reference was taken
    for _ in range(5):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED, seconds=290e-6)  # saved little, but the pieces were shared


def test_untimed_steps_take_no_reference() -> None:
    backoff = _core._ThreadBackoff()
    for _ in range(300):
        assert backoff.threads_for_step(2, COLD) == 2
        backoff.record(COLD, **SHARED)


@pytest.mark.usefixtures("restore_runtime")
def test_a_step_says_how_many_threads_it_ran_on() -> None:
    """A new optimizer's first step of a large array uses every thread; a small one, one."""
    if not fo.config()["openmp"]:
        pytest.skip("built without OpenMP: every step runs on one thread")
    fo.set_num_threads(2)
    large, small = np.zeros(1_000_000, np.float32), np.zeros(1_000, np.float32)
    for array, expected in ((large, 2), (small, 1)):
        opt = fo.Adam([array], lr=1e-3)
        opt.step([np.ones_like(array)])
        assert opt._plan.last_threads == expected


def test_a_plan_times_its_steps() -> None:
    """What the backoff judges cold steps by: each step's time, kernels and thread placement."""
    array = np.zeros(100_000, np.float32)
    opt = fo.Adam([array], lr=1e-3)
    assert opt._plan is None or opt._plan.last_seconds == 0
    start = time.perf_counter()
    opt.step([np.ones_like(array)])
    elapsed = time.perf_counter() - start
    assert 0 < opt._plan.last_seconds <= elapsed


def _cold_steps(steps: int) -> tuple[int, list[int]]:
    """A fresh optimizer's cold steps of 100k elements (tens of microseconds: timed, so the
    backoff takes a lone reference step at the second): its steps alone and threads per step."""
    array = np.zeros(100_000, np.float32)
    opt = fo.Adam([array], lr=1e-3)
    threads = []
    for _ in range(steps):
        opt.step([np.ones_like(array)])
        threads.append(opt._plan.last_threads)
        time.sleep(0.001)
    return opt._plan.steps_alone, threads


def test_the_thread_policy_switch_turns_the_backoff_off_and_on(restore_runtime: None) -> None:
    assert fo.get_thread_policy() == {"placement": fo.get_thread_placement(), "backoff": True}  # the default
    fo.set_thread_policy(backoff=False)
    assert fo.get_thread_policy()["backoff"] is False and fo.config()["thread_backoff"] is False
    if fo.config()["openmp"]:
        fo.set_num_threads(2)
        assert _cold_steps(12) == (0, [2] * 12)  # without the backoff every cold step wakes every thread
    fo.set_thread_policy(backoff=True)
    assert fo.get_thread_policy()["backoff"] is True
    if fo.config()["openmp"]:
        alone, threads = _cold_steps(12)
        assert alone >= 1 and 1 in threads  # the lone reference step, at least


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"backoff": 1}, TypeError, "backoff must be True, False or None"),
    ({"placement": "no"}, TypeError, "placement must be True, False or None"),
    ({"placement": False, "backoff": 0}, TypeError, "backoff must be"),  # refused before placement changes
])
def test_the_thread_policy_switch_takes_bools(arguments: dict[str, object], error: type[Exception], message: str,
                                               restore_runtime: None) -> None:
    before = fo.get_thread_policy()
    with pytest.raises(error, match=message):
        fo.set_thread_policy(**arguments)  # type: ignore[arg-type]
    assert fo.get_thread_policy() == before


def test_fastoptim_thread_backoff_0_turns_it_off_at_import() -> None:
    run = run_python("import fastoptim as fo; print(fo.get_thread_policy()['backoff'])",
                     FASTOPTIM_THREAD_BACKOFF="0")
    assert run.stdout.strip() == "False", run.stderr


def test_a_stalled_shared_step_sends_the_next_64_cold_steps_alone_at_once() -> None:
    """A worker woken on a busy CPU may wait a time slice: a step 8 lone steps long is a stall."""
    backoff = timed_with_reference(100e-6)
    backoff.record(COLD, **SHARED, seconds=60e-6)
    backoff.record(COLD, **SHARED, seconds=810e-6)  # shared, but it waited for a CPU
    assert [backoff.threads_for_step(2, COLD) for _ in range(65)] == [1] * 64 + [2]
    backoff.record(COLD, **SHARED, seconds=60e-6)  # the try went well: sharing resumes
    assert backoff.threads_for_step(2, COLD) == 2
    backoff.record(COLD, **SHARED, seconds=790e-6)  # slower, not a stall: taken for chance
    assert backoff.threads_for_step(2, COLD) == 2
