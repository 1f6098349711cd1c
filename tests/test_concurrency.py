"""Threads: kernels run without the GIL, independent optimizers step at once and give the bits
they give one by one, and one optimizer stepped or edited from several threads is serialized."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import fastoptim as fo
from registry import CASES

LARGE = 200_000  # above kParallelMin (32k elements): every step runs an OpenMP region
STEPS = 5
BY_NAME = {case.name: case for case in CASES}
# Eight optimizers of different rules and dtypes, each with its richest registry settings.
EIGHT = [("sgd", np.float32), ("adam", np.float32), ("adamw", np.float64), ("rmsprop", np.float32),
         ("lamb", np.float32), ("lars", np.float64), ("lion", np.float32), ("ranger", np.float32)]


@contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    """Make the interpreter switch threads far more often, so races get their chance."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(targets: list[Callable[[], None]], timeout: float = 120.0) -> None:
    """Run each target on its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait()
                target()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish: deadlock?"
    if errors:
        raise errors[0]


def _problem(seed: int, dtype: type, steps: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    shapes = [(LARGE,), (301, 333)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


def _steps_done(opt) -> int:
    state = opt.state_dict()
    if "optimizer" in state:  # Lookahead: its own count, and the inner optimizer's
        assert {e["step"] for e in state["optimizer"]["state"].values()} == {state["steps"]}
        return int(state["steps"])
    (steps,) = {entry["step"] for entry in state["state"].values()}
    return int(steps)


def _bytes(opt, params: list[np.ndarray]) -> list[bytes]:
    state = [a for name in sorted(opt.state, key=str) for _, a in sorted(opt.state[name].items())]
    return [a.tobytes() for a in params + state]


@pytest.fixture
def two_threads(restore_runtime: None) -> None:
    fo.set_num_threads(2)  # OpenMP inside each step, whatever the machine's default


def test_kernels_release_the_gil(two_threads):
    """While one thread is inside a long step, another runs Python code."""
    fo.set_num_threads(1)
    n = 1 << 24
    p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
    opt = fo.Adam([p])
    opt.step([g])  # allocate the state first
    stamps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    windows = []
    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with _switch_interval(1e-3):
            for _ in range(5):
                start = time.perf_counter()
                opt.step([g])
                windows.append((start, time.perf_counter()))
    finally:
        stop.set()
        ticker.join()
    stamps_arr = np.array(stamps)
    # Python ran on the other thread well inside a step (margins of two switch intervals)
    inside = [int(((stamps_arr > a + 2e-3) & (stamps_arr < b - 2e-3)).sum()) for a, b in windows]
    assert max(b - a for a, b in windows) > 10e-3, "steps too short to tell"
    assert sum(inside) > 0, f"no Python ran during any step: {inside}, windows {windows}"


def test_independent_optimizers_in_threads_match_one_by_one(two_threads):
    def build():
        runs = []
        for i, (name, dtype) in enumerate(EIGHT):
            params, grads = _problem(1000 + i, dtype, STEPS)
            opt = BY_NAME[name].cls(params, **BY_NAME[name].arg_sets[-1])
            runs.append((opt, params, grads))
        return runs

    def stepper(opt, grads) -> Callable[[], None]:
        def run() -> None:
            for g in grads:
                opt.step(g)
        return run

    alone = build()
    for opt, _, grads in alone:
        stepper(opt, grads)()
    want = [_bytes(opt, params) for opt, params, _ in alone]
    for _ in range(3):  # three rounds, three interleavings
        together = build()
        _run_threads([stepper(opt, grads) for opt, _, grads in together])
        for (name, dtype), (opt, params, _), expected in zip(EIGHT, together, want):
            assert _bytes(opt, params) == expected, f"{name} ({np.dtype(dtype).name}) differs when run beside others"
            assert _steps_done(opt) == STEPS


@pytest.mark.parametrize(("name", "kwargs"), [
    ("sgd", dict(lr=0.01, momentum=0.9)),
    ("adam", dict(lr=1e-3, amsgrad=True)),  # a step counter in the bias correction
    ("lamb", dict(lr=1e-3)),                # per-array norms in scratch space owned by the plan
    ("lookahead", dict(lr=0.01, momentum=0.9, k=3)),  # two locks: Lookahead's and the inner optimizer's
    ("nadam", dict(lr=1e-3)),               # a running scalar (mu_product) advanced each step
])
def test_one_optimizer_stepped_from_two_threads_is_serialized(name, kwargs, two_threads):
    """2 threads x 50 steps with the same gradient = 100 steps in a row, bit for bit: every step
    is the same function of the state, so any serial order gives the same bits, and a step that
    overlapped another (lost updates, a step counted twice) would not."""
    case = BY_NAME[name]
    rng = np.random.default_rng(7)
    p_seq, g = rng.standard_normal(1 << 20).astype(np.float32), rng.standard_normal(1 << 20).astype(np.float32)
    p_par = p_seq.copy()
    seq = case.cls([p_seq], **kwargs)
    for _ in range(100):
        seq.step([g])
    par = case.cls([p_par], **kwargs)

    def fifty() -> None:
        for _ in range(50):
            par.step([g])

    with _switch_interval(1e-5):
        _run_threads([fifty, fifty])
    assert _steps_done(par) == _steps_done(seq) == 100
    assert _bytes(par, [p_par]) == _bytes(seq, [p_seq])


def test_editing_hyper_parameters_while_another_thread_steps(two_threads):
    """Two threads edit lr, weight_decay and momentum (which adds and drops state, rebuilding
    the plan) while a third steps: no crash, finite parameters, every step counted, and the
    step after the threads finish uses the values the group holds then."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(LARGE)
    g = rng.standard_normal(LARGE)
    opt = fo.SGD([p], lr=1e-3)
    group = opt.param_groups[0]
    steps = 200

    def stepper() -> None:
        for _ in range(steps):
            opt.step([g])

    def editor(seed: int) -> Callable[[], None]:
        def run() -> None:
            local = np.random.default_rng(seed)
            for i in range(2000):
                group["lr"] = float(local.uniform(1e-4, 1e-3))
                if i % 50 == 0:
                    group["momentum"] = 0.9 if group["momentum"] == 0 else 0.0
                    group["weight_decay"] = float(local.uniform(0, 1e-3))
            group["momentum"] = 0.0
            group["weight_decay"] = 0.0
            group["lr"] = float(local.uniform(1e-4, 1e-3))
        return run

    with _switch_interval(1e-6):
        _run_threads([stepper, editor(1), editor(2)])
    assert np.isfinite(p).all()
    assert _steps_done(opt) == steps
    # The last edits took effect: plain SGD with the group's lr, exactly p − lr·g in float64.
    before = p.copy()
    opt.step([g])
    np.testing.assert_array_equal(p, before - group["lr"] * g,
                                  err_msg=f"the step did not use the group's lr {group['lr']}")
    assert _steps_done(opt) == steps + 1


def test_an_edit_made_while_a_step_reads_the_group_is_not_lost():
    """The interleaving the test above can only hit by chance, pinned: the stepping thread has
    read the group's hyper-parameters for the plan when another thread sets lr. The edit must
    reach a later step; it must not be dropped when the step marks the groups as applied."""
    p, g = np.zeros(1000), np.ones(1000)
    opt = fo.SGD([p], lr=1e-3)
    group = opt.param_groups[0]
    read, edited = threading.Event(), threading.Event()
    row = opt._row

    def row_then_let_the_editor_run(group_):
        values = row(group_)
        if not read.is_set():
            read.set()
            edited.wait(0.5)  # an implementation that blocks edits during a step just continues
        return values

    opt._row = row_then_let_the_editor_run  # the hook every refresh reads a group through

    def editor() -> None:
        assert read.wait(10)
        group["lr"] = 0.5
        edited.set()

    group["lr"] = 0.25  # the edit this step applies
    thread = threading.Thread(target=editor)
    thread.start()
    opt.step([g])
    thread.join(10)
    assert not thread.is_alive()
    before = p.copy()
    opt.step([g])
    np.testing.assert_allclose(before - p, 0.5 * g, rtol=1e-12,
                               err_msg="the step after the edit did not use lr = 0.5: the edit was lost")


def test_a_group_validated_then_edited_still_steps_with_what_was_validated():
    """Case 8 of issue 15, pinned: another thread writes an invalid value into the group after
    the step has validated it and before the row reaches the kernel. The step must use the one
    snapshot it validated; the invalid value is refused at the next step, nothing changed."""
    p, g = np.zeros(1000), np.ones(1000)
    opt = fo.SGD([p], lr=1e-3)
    group = opt.param_groups[0]
    check = opt._check_group

    def check_then_edit(snapshot):
        check(snapshot)
        group["lr"] = math.nan  # as if another thread ran here

    opt._check_group = check_then_edit
    group["lr"] = 0.5
    opt.step([g])
    assert np.isfinite(p).all() and (p == -0.5).all()
    opt._check_group = check
    with pytest.raises(ValueError, match="lr must be finite"):
        opt.step([g])
    assert (p == -0.5).all()


def test_invalid_values_written_in_a_loop_never_reach_the_kernel(two_threads):
    """Case 8 as reported: one thread writes lr = nan then lr = 0.01 in a loop while another
    steps for a second. Each step either uses a valid lr or refuses; the parameters stay finite."""
    rng = np.random.default_rng(8)
    p, g = rng.standard_normal(LARGE), rng.standard_normal(LARGE)
    opt = fo.Adam([p], lr=1e-2)
    group = opt.param_groups[0]
    stop = threading.Event()
    outcomes = {"stepped": 0, "refused": 0}
    refusals: list[str] = []

    def flip() -> None:
        while not stop.is_set():
            group["lr"] = math.nan
            group["betas"] = [0.9, math.nan]
            group["lr"] = 0.01
            group["betas"] = [0.9, 0.999]

    def stepper() -> None:
        deadline = time.perf_counter() + 1.0
        while time.perf_counter() < deadline:
            try:
                opt.step([g])
                outcomes["stepped"] += 1
            except ValueError as error:
                refusals.append(str(error))
                outcomes["refused"] += 1
        stop.set()

    with _switch_interval(1e-5):
        _run_threads([stepper, flip])
    assert np.isfinite(p).all(), outcomes
    assert outcomes["stepped"] > 0, outcomes
    assert all("must be finite" in text for text in refusals), refusals[:3]


STRESS_ITERATIONS = 300


def test_threads_stepping_editing_replacing_and_checkpointing_one_optimizer(two_threads):
    """The stress test of issue 15: one optimizer, two threads stepping (dict and list
    gradients), one editing hyper-parameters (some invalid for a while), one replacing entries
    of the shared gradients (some with None), one replacing state arrays (some unfit for a
    while), one saving and loading state dicts. Refusals are expected, crashes and any other
    error are not; afterwards the optimizer steps and its parameters are finite. CI runs this
    under AddressSanitizer."""
    rng = np.random.default_rng(15)
    params = {"w": rng.standard_normal((300, 200)).astype(np.float32), "b": rng.standard_normal(200),
              "v": np.asfortranarray(rng.standard_normal((70, 30)).astype(np.float32))}
    opt = fo.Adam([{"params": {"w": params["w"], "v": params["v"]}}, {"params": {"b": params["b"]}, "lr": 1e-3}],
                  lr=1e-3, amsgrad=True)
    def like(key: str, local: np.random.Generator) -> np.ndarray:
        param = params[key]
        return np.asarray(local.standard_normal(param.shape), param.dtype, order="F" if key == "v" else "C")

    grads = {k: like(k, rng) for k in params}
    refusals: list[str] = []
    lock = threading.Lock()

    def expect_refusal(call: Callable[[], None]) -> None:
        try:
            call()
        except (TypeError, ValueError) as error:
            with lock:
                refusals.append(str(error)[:60])

    def step_dict() -> None:
        for _ in range(STRESS_ITERATIONS):
            expect_refusal(lambda: opt.step(dict(grads)))

    def step_list() -> None:
        for _ in range(STRESS_ITERATIONS):
            expect_refusal(lambda: opt.step([grads.get("w"), grads.get("v"), grads.get("b")]))

    def edit_groups() -> None:
        local = np.random.default_rng(1)
        for i in range(STRESS_ITERATIONS):
            group = opt.param_groups[i % 2]
            group["lr"] = float(local.uniform(1e-4, 1e-2)) if i % 7 else -1.0
            group["amsgrad"] = bool(i % 3)
            if i % 11 == 0:
                group["weight_decay"] = "heavy"
            group["weight_decay"] = float(local.uniform(0, 1e-2))
            group["lr"] = float(local.uniform(1e-4, 1e-2))

    def replace_grads() -> None:
        local = np.random.default_rng(2)
        for i in range(STRESS_ITERATIONS):
            key = ("w", "b", "v")[i % 3]
            grads[key] = None if i % 5 == 0 else like(key, local)
            time.sleep(0)
            grads[key] = like(key, local)

    def replace_state() -> None:
        for i in range(STRESS_ITERATIONS):
            name = ("w", "b", "v")[i % 3]
            slots = opt.state[name]
            param = params[name]
            if i % 4 == 0:
                slots["exp_avg"] = np.zeros(3, param.dtype)  # refused until replaced again
            slots["exp_avg"] = np.zeros_like(param)
            if i % 6 == 0:
                param.flags.writeable = False
                time.sleep(0)
                param.flags.writeable = True

    def checkpoint() -> None:
        saved = None
        for i in range(STRESS_ITERATIONS // 3):
            try:
                state = opt.state_dict()
            except (TypeError, ValueError):
                continue
            if saved is not None and i % 2:
                expect_refusal(lambda s=saved: opt.load_state_dict(s))
            saved = state

    with _switch_interval(1e-5):
        _run_threads([step_dict, step_list, edit_groups, replace_grads, replace_state, checkpoint], timeout=600)
    for group in opt.param_groups:
        group["lr"], group["weight_decay"] = 1e-3, 0.0
    for name, param in params.items():
        opt.state[name]["exp_avg"] = np.zeros_like(param)
    opt.step({k: np.zeros_like(v) for k, v in params.items()})
    assert all(np.isfinite(p).all() for p in params.values())
    unexpected = [r for r in refusals if not any(t in r for t in (
        "must be", "has shape", "is read-only", "has dtype", "lr must", "weight_decay must", "state["))]
    assert not unexpected, unexpected[:5]
