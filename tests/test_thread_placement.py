"""Thread placement (cpp/src/thread_placement.hpp): before a step on several threads, the
OpenMP workers may run on every CPU the caller may use but the one it runs on, so that a worker
woken after other work starts at once on a CPU of its own. Checked against the kernel's own
record of each thread's affinity. Its bits are the thread counts' bits (tests/test_bits.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from child import run_python

import fastoptim as fo
from fastoptim import _core

BINDING_VARIABLES = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh process whose placement depends only on `env`."""
    return run_python(code, without=(*BINDING_VARIABLES, "FASTOPTIM_THREAD_PLACEMENT"), **env)


def _cpus_of_this_thread() -> set[int]:
    return set(os.sched_getaffinity(0))


needs_placement = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and _core.thread_placement_supported()
         and len(os.sched_getaffinity(0)) >= 2),
    reason="thread placement needs Linux, OpenMP, no OMP_PROC_BIND/OMP_PLACES and two CPUs to use")


def _step_on_two_threads() -> None:
    array = np.zeros(1_000_000, np.float32)
    opt = fo.Adam([array], lr=1e-3)
    opt.step([np.ones_like(array)])  # a new optimizer's first step uses every thread
    assert opt._plan.last_threads == 2


def _placed_by_a_step() -> tuple[int, list[int]]:
    """Placement on, one step on two threads: the CPU the workers were kept off, and their ids."""
    fo.set_num_threads(2)
    fo.set_thread_placement(True)
    _step_on_two_threads()
    excluded, workers, _ = _core._placed_workers()
    return excluded, workers


@needs_placement
@pytest.mark.usefixtures("restore_runtime")
def test_workers_are_kept_off_the_callers_cpu() -> None:
    excluded, workers = _placed_by_a_step()
    everywhere = _cpus_of_this_thread()
    assert excluded in everywhere
    assert len(workers) == 1
    assert {str(w) for w in workers} <= set(os.listdir("/proc/self/task"))  # threads of this process
    for worker in workers:
        assert os.sched_getaffinity(worker) == everywhere - {excluded}


@needs_placement
@pytest.mark.usefixtures("restore_runtime")
def test_turning_placement_off_gives_the_workers_every_cpu_back() -> None:
    _, workers = _placed_by_a_step()
    fo.set_thread_placement(False)
    assert not fo.get_thread_placement() and not fo.config()["thread_placement"]
    _step_on_two_threads()
    excluded, _, _ = _core._placed_workers()
    assert excluded == -1
    for worker in workers:
        assert os.sched_getaffinity(worker) == _cpus_of_this_thread()


@needs_placement
@pytest.mark.usefixtures("restore_runtime")
def test_a_caller_with_one_cpu_leaves_the_workers_where_they_are() -> None:
    fo.set_num_threads(2)
    fo.set_thread_placement(False)
    _step_on_two_threads()  # every CPU back
    everywhere = _cpus_of_this_thread()
    one = min(everywhere)
    os.sched_setaffinity(0, {one})  # this thread only (Linux)
    try:
        fo.set_thread_placement(True)
        _step_on_two_threads()
        excluded, workers, _ = _core._placed_workers()
        assert excluded == -1  # nowhere else to send them
        for worker in workers:
            assert os.sched_getaffinity(worker) == everywhere
    finally:
        os.sched_setaffinity(0, everywhere)


@needs_placement
def test_placement_is_on_by_default_and_can_be_turned_off_from_the_environment() -> None:
    code = "import fastoptim as fo; print(fo.get_thread_placement(), fo.config()['thread_placement'])"
    assert _python(code).stdout.split() == ["True", "True"]
    assert _python(code, FASTOPTIM_THREAD_PLACEMENT="0").stdout.split() == ["False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="placement exists only on Linux")
@pytest.mark.parametrize(("variable", "value"), [("OMP_PROC_BIND", "true"), ("OMP_PLACES", "cores"),
                                             ("GOMP_CPU_AFFINITY", "0-1"), ("KMP_AFFINITY", "compact")])
def test_the_users_own_placement_turns_it_off(variable: str, value: str) -> None:
    code = ("import fastoptim as fo\n"
            "from fastoptim import _core\n"
            "print(fo.get_thread_placement(), _core.thread_placement_supported())\n"
            "try:\n"
            "    fo.set_thread_placement(True)\n"
            "except ValueError as e:\n"
            "    print('ValueError', e)\n")
    run = _python(code, **{variable: value})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "False False"
    assert lines[1].startswith("ValueError") and variable in lines[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="placement exists only on Linux")
def test_omp_proc_bind_false_leaves_placement_on() -> None:
    run = _python("import fastoptim as fo; print(fo.get_thread_placement())", OMP_PROC_BIND="false")
    assert run.stdout.strip() == str(fo.config()["openmp"])


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_set_thread_placement_takes_a_bool(bad: object) -> None:
    with pytest.raises(TypeError, match="on must be a bool"):
        fo.set_thread_placement(bad)  # type: ignore[arg-type]
