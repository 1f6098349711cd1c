"""fastoptim.lr_scheduler: beside torch.optim.lr_scheduler step for step, save/resume, bad arguments.

One registry (CASES) lists every scheduler with several argument sets; each row builds the same
scheduler from either module (``m`` is ``torch.optim.lr_scheduler`` or ``fastoptim.lr_scheduler``,
whose signatures agree), so every row joins the torch comparison and the resume tests.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastoptim as fo
import fastoptim.lr_scheduler as F
from fastoptim import schedules

REL = 1e-12  # the agreement asked of every value, relative, at every step


# ---- helpers for the registry ----------------------------------------------------------------
class HalvingScale:
    """A CyclicLR scale_fn as a callable object: its __dict__ goes into the state dict."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, x: float) -> float:
        return self.rate ** (x - 1)


class WarmupFactor:
    """A LambdaLR factor as a callable object with state."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, t: int) -> float:
        return min(1.0, (t + 1) / self.steps) * 0.98**t


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Any, Any], Any]  # (scheduler module, optimizer) -> scheduler
    optimizer: str = "sgd"  # "sgd" (momentum 0.9) or "adam"
    lrs: tuple[float, ...] = (0.1,)  # one param group per entry
    steps: int = 150
    momentum: bool = False  # also compare momentum / betas[0]


CASES = [
    Case("StepLR-7-0.5", lambda m, o: m.StepLR(o, step_size=7, gamma=0.5)),
    Case("StepLR-1-0.97-adam-2groups", lambda m, o: m.StepLR(o, 1, 0.97), "adam", (0.1, 0.03)),
    Case("StepLR-25-1.5", lambda m, o: m.StepLR(o, step_size=25, gamma=1.5)),
    Case("MultiStepLR-repeats", lambda m, o: m.MultiStepLR(o, milestones=[3, 10, 10, 50], gamma=0.5)),
    Case("MultiStepLR-0-adam-2groups", lambda m, o: m.MultiStepLR(o, [0, 40, 80, 81], 0.3), "adam", (0.1, 0.05)),
    Case("ExponentialLR-0.97", lambda m, o: m.ExponentialLR(o, gamma=0.97)),
    Case("ExponentialLR-1.01-adam", lambda m, o: m.ExponentialLR(o, 1.01), "adam", (1e-3, 2e-3)),
    Case("LinearLR-warmup", lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10)),
    Case("LinearLR-decay-to-0", lambda m, o: m.LinearLR(o, 1.0, 0.0, 120), "adam", (0.1, 0.2)),
    Case("LinearLR-defaults", lambda m, o: m.LinearLR(o)),
    Case("ConstantLR-0.3-20", lambda m, o: m.ConstantLR(o, factor=0.3, total_iters=20)),
    Case("ConstantLR-defaults-adam", lambda m, o: m.ConstantLR(o), "adam", (0.1, 0.01)),
    Case("PolynomialLR-50-2", lambda m, o: m.PolynomialLR(o, total_iters=50, power=2.0)),
    Case("PolynomialLR-140-0.5", lambda m, o: m.PolynomialLR(o, 140, 0.5), "adam", (0.1, 0.3)),
    Case("CosineAnnealingLR-30-cycles", lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=0.001)),
    Case("CosineAnnealingLR-100", lambda m, o: m.CosineAnnealingLR(o, 100), "adam", (0.1, 0.02)),
    Case("CosineAnnealingLR-1", lambda m, o: m.CosineAnnealingLR(o, T_max=1, eta_min=0.01)),
    Case("CosineAnnealingWarmRestarts-7-2", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2,
                                                                                       eta_min=0.001)),
    Case("CosineAnnealingWarmRestarts-10", lambda m, o: m.CosineAnnealingWarmRestarts(o, 10), "adam", (0.1, 0.5)),
    Case("CosineAnnealingWarmRestarts-1-3", lambda m, o: m.CosineAnnealingWarmRestarts(o, 1, 3, 0.01)),
    Case("OneCycleLR-cos", lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=150), momentum=True),
    Case("OneCycleLR-three-phase-linear-adam",
         lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.05], epochs=10, steps_per_epoch=15, pct_start=0.25,
                                   anneal_strategy="linear", three_phase=True, base_momentum=[0.8, 0.7],
                                   max_momentum=0.9, div_factor=10.0, final_div_factor=100.0),
         "adam", (0.1, 0.2), momentum=True),
    Case("OneCycleLR-three-phase-cos", lambda m, o: m.OneCycleLR(o, 1.0, 150, pct_start=0.4, three_phase=True),
         momentum=True),
    Case("OneCycleLR-no-momentum", lambda m, o: m.OneCycleLR(o, 0.3, 150, cycle_momentum=False), "adam"),
    Case("CyclicLR-triangular", lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=9),
         momentum=True),
    Case("CyclicLR-triangular2-adam",
         lambda m, o: m.CyclicLR(o, [0.01, 0.001], [0.2, 0.05], 10, 6, mode="triangular2", base_momentum=0.85,
                                 max_momentum=[0.95, 0.9]),
         "adam", (0.1, 0.01), momentum=True),
    Case("CyclicLR-exp_range", lambda m, o: m.CyclicLR(o, 0.01, 0.2, 9, 5, mode="exp_range", gamma=0.99),
         momentum=True),
    Case("CyclicLR-scale_fn-iterations",
         lambda m, o: m.CyclicLR(o, 0.01, 0.2, 12, scale_fn=lambda x: 1 / (1 + x / 50), scale_mode="iterations"),
         momentum=True),
    Case("CyclicLR-scale_fn-object-no-momentum",
         lambda m, o: m.CyclicLR(o, 0.01, 0.2, 8, 12, scale_fn=HalvingScale(0.7), cycle_momentum=False), "adam"),
    Case("LambdaLR", lambda m, o: m.LambdaLR(o, lr_lambda=lambda t: 1 / (1 + t))),
    Case("LambdaLR-per-group-adam", lambda m, o: m.LambdaLR(o, [lambda t: 0.95**t, WarmupFactor(20)]), "adam",
         (0.1, 0.02)),
    Case("MultiplicativeLR", lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda t: 0.99 if t % 3 else 0.9)),
    Case("MultiplicativeLR-per-group", lambda m, o: m.MultiplicativeLR(o, [lambda t: 0.98, lambda t: 1.001]),
         "adam", (0.1, 0.02)),
    Case("SequentialLR-warmup-exp-cos",
         lambda m, o: m.SequentialLR(o, [m.LinearLR(o, 0.1, 1.0, 10), m.ExponentialLR(o, 0.9),
                                         m.CosineAnnealingLR(o, 40, 0.001)], milestones=[10, 30])),
    Case("SequentialLR-constant-step-adam",
         lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, 0.5, 8), m.StepLR(o, 10, 0.7)], [5]), "adam", (0.1, 0.4)),
    Case("SequentialLR-mult-restarts-poly",
         lambda m, o: m.SequentialLR(o, [m.MultiplicativeLR(o, lambda t: 0.95), m.CosineAnnealingWarmRestarts(o, 9),
                                         m.PolynomialLR(o, 30, 2.0)], [20, 70])),
    Case("SequentialLR-lambda-multistep",
         lambda m, o: m.SequentialLR(o, [m.LambdaLR(o, lambda t: (t + 1) / 15), m.MultiStepLR(o, [5, 20], 0.5)],
                                     [15])),
    Case("ChainedScheduler-warmup-times-decay",
         lambda m, o: m.ChainedScheduler([m.LinearLR(o, 0.1, 1.0, 10), m.ExponentialLR(o, 0.97)])),
    Case("ChainedScheduler-three-adam",
         lambda m, o: m.ChainedScheduler([m.ConstantLR(o, 0.5, 12), m.StepLR(o, 9, 0.8),
                                          m.CosineAnnealingLR(o, 50, 0.0)], optimizer=o), "adam", (0.1, 0.03)),
    Case("ChainedScheduler-mult-poly",
         lambda m, o: m.ChainedScheduler([m.MultiplicativeLR(o, lambda t: 0.995), m.PolynomialLR(o, 140, 1.5)])),
]


def make_pair(case: Case) -> tuple[Any, list[np.ndarray]]:
    """A fastoptim optimizer with one group per case.lrs entry, and gradients for it."""
    arrays = [np.zeros(4) for _ in case.lrs]
    groups = [{"params": [a], "lr": lr} for a, lr in zip(arrays, case.lrs)]
    opt = fo.SGD(groups, lr=0.1, momentum=0.9) if case.optimizer == "sgd" else fo.Adam(groups, lr=0.1)
    return opt, [np.full(4, 0.5) for _ in arrays]


def read(opt: Any, case: Case) -> tuple[float, ...]:
    """What a step is compared on: every group's lr, then its momentum or betas[0]."""
    values = [float(g["lr"]) for g in opt.param_groups]
    if case.momentum:
        values += [float(g["betas"][0] if "betas" in g else g["momentum"]) for g in opt.param_groups]
    return tuple(values)


def fastoptim_trace(case: Case, steps: int | None = None) -> list[tuple[float, ...]]:
    opt, grads = make_pair(case)
    sched = case.build(F, opt)
    trace = [read(opt, case)]
    for _ in range(case.steps if steps is None else steps):
        opt.step(grads)
        sched.step()
        trace.append(read(opt, case))
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    return trace


def torch_trace(torch: Any, case: Case) -> list[tuple[float, ...]]:
    tensors = [torch.zeros(4, dtype=torch.float64, requires_grad=True) for _ in case.lrs]
    for t in tensors:
        t.grad = torch.full((4,), 0.5, dtype=torch.float64)
    groups = [{"params": [t], "lr": lr} for t, lr in zip(tensors, case.lrs)]
    opt = (torch.optim.SGD(groups, lr=0.1, momentum=0.9) if case.optimizer == "sgd"
           else torch.optim.Adam(groups, lr=0.1))
    sched = case.build(torch.optim.lr_scheduler, opt)
    trace = [read(opt, case)]
    for _ in range(case.steps):
        opt.step()
        sched.step()
        trace.append(read(opt, case))
    return trace


def assert_traces_agree(ours: list[tuple[float, ...]], theirs: list[tuple[float, ...]]) -> None:
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for column, (x, y) in enumerate(zip(a, b)):
            assert math.isclose(x, y, rel_tol=REL, abs_tol=0.0), f"step {step}, value {column}: {x!r} != {y!r}"


def assert_schedule_moves(trace: list[tuple[float, ...]], case: Case) -> None:
    """Guards the comparison itself: a schedule that never changes would agree with anything."""
    for column in range(len(trace[0])):
        assert len({row[column] for row in trace}) > 1, f"value {column} of {case.id} never changes"


# ---- beside torch ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch_step_for_step(case: Case) -> None:
    torch = pytest.importorskip("torch")
    ours = fastoptim_trace(case)
    assert_schedule_moves(ours, case)
    assert_traces_agree(ours, torch_trace(torch, case))


PLATEAU_ARGS = [
    dict(),
    dict(mode="min", factor=0.5, patience=3, threshold=1e-3),
    dict(mode="min", factor=0.5, patience=0, threshold=0.05, threshold_mode="abs", cooldown=2, min_lr=0.004),
    dict(mode="max", factor=0.7, patience=2, cooldown=3, min_lr=[0.01, 0.002]),
    dict(mode="max", factor=0.3, patience=4, threshold=0.02, threshold_mode="abs", eps=2e-3),
    dict(mode="min", factor=0.8, patience=1, threshold=0.0, min_lr=1e-3, eps=0.0),
]


def plateau_metrics(mode: str, steps: int = 160) -> list[float]:
    """Improves in bursts with noise and long plateaus, so every branch of the rule runs."""
    rng = np.random.default_rng(7)
    level = np.repeat(np.exp(-np.arange(steps // 20 + 1)), 20)[:steps]
    metric = level * (1 + 0.02 * rng.standard_normal(steps)) + 0.002 * (np.arange(steps) % 7 == 0)
    return [float(x) for x in (metric if mode == "min" else -metric)]


@pytest.mark.parametrize("kwargs", PLATEAU_ARGS, ids=str)
def test_reduce_lr_on_plateau_matches_torch(kwargs: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    metrics = plateau_metrics(kwargs.get("mode", "min"))
    ours, theirs = [], []
    opt = fo.SGD([{"params": [np.zeros(3)], "lr": 0.1}, {"params": [np.zeros(3)], "lr": 0.05}], momentum=0.9)
    sched = F.ReduceLROnPlateau(opt, **kwargs)
    tensors = [torch.zeros(3, dtype=torch.float64) for _ in range(2)]
    topt = torch.optim.SGD([{"params": [tensors[0]], "lr": 0.1}, {"params": [tensors[1]], "lr": 0.05}], momentum=0.9)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    for metric in metrics:
        opt.step([np.ones(3), np.ones(3)])
        sched.step(metric)
        tsched.step(metric)
        ours.append(tuple(g["lr"] for g in opt.param_groups))
        theirs.append(tuple(g["lr"] for g in topt.param_groups))
        assert sched.get_last_lr() == list(ours[-1])
        assert (sched.num_bad_epochs, sched.cooldown_counter, sched.best) == (
            tsched.num_bad_epochs, tsched.cooldown_counter, tsched.best)
    assert len({row[0] for row in ours}) > 2, "the script never reduced the lr twice"
    assert_traces_agree(ours, theirs)


@pytest.mark.parametrize("build", [
    lambda m, o, e: m.StepLR(o, 7, 0.5, last_epoch=e),
    lambda m, o, e: m.ExponentialLR(o, 0.97, last_epoch=e),
    lambda m, o, e: m.LinearLR(o, 0.2, 1.0, 30, last_epoch=e),
    lambda m, o, e: m.CosineAnnealingLR(o, 30, 0.001, last_epoch=e),
    lambda m, o, e: m.CosineAnnealingWarmRestarts(o, 7, 2, last_epoch=e),
    lambda m, o, e: m.LambdaLR(o, lambda t: 0.9**t, last_epoch=e),
    lambda m, o, e: m.PolynomialLR(o, 60, 2.0, last_epoch=e),
    lambda m, o, e: m.OneCycleLR(o, 0.5, 120, last_epoch=e),
    lambda m, o, e: m.CyclicLR(o, 0.01, 0.1, 7, last_epoch=e),
], ids=["StepLR", "ExponentialLR", "LinearLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LambdaLR",
        "PolynomialLR", "OneCycleLR", "CyclicLR"])
def test_last_epoch_argument_matches_torch(build: Callable[..., Any]) -> None:
    """torch's own way of resuming: a new scheduler built with last_epoch=k on the same optimizer."""
    torch = pytest.importorskip("torch")
    opt = fo.SGD([np.zeros(2)], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    first, tfirst = build(F, opt, -1), build(torch.optim.lr_scheduler, topt, -1)
    for _ in range(23):
        topt.step()
        first.step()
        tfirst.step()
    second, tsecond = build(F, opt, 23), build(torch.optim.lr_scheduler, topt, 23)
    assert second.last_epoch == tsecond.last_epoch
    values = []
    for _ in range(60):
        topt.step()
        second.step()
        tsecond.step()
        values.append(opt.param_groups[0]["lr"])
        assert math.isclose(values[-1], topt.param_groups[0]["lr"], rel_tol=REL, abs_tol=0.0)
        assert opt.param_groups[0]["momentum"] == topt.param_groups[0]["momentum"]
    assert len(set(values)) > 2


def test_cosine_warm_restarts_with_fractional_epochs_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    opt = fo.Adam([np.zeros(2)], lr=0.1)
    topt = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    sched = F.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=1e-4)
    tsched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0=3, T_mult=2, eta_min=1e-4)
    values = []
    for epoch in range(20):
        for i in range(7):
            topt.step()
            sched.step(epoch + i / 7)
            tsched.step(epoch + i / 7)
            values.append(opt.param_groups[0]["lr"])
            assert math.isclose(values[-1], topt.param_groups[0]["lr"], rel_tol=REL, abs_tol=0.0), (epoch, i)
            assert sched.last_epoch == tsched.last_epoch
    assert len(set(values)) > 50


def test_warmup_cosine_matches_torch_sequential_linear_then_cosine() -> None:
    """WarmupCosineLR is torch's SequentialLR([LinearLR, CosineAnnealingLR]) in closed form."""
    torch = pytest.importorskip("torch")
    T = torch.optim.lr_scheduler
    for warmup, total, min_lr, start in [(10, 120, 1e-3, 0.01), (25, 150, 0.0, 0.1), (1, 100, 0.01, 0.5)]:
        opt = fo.SGD([np.zeros(2)], lr=0.1)
        topt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        sched = F.WarmupCosineLR(opt, warmup, total, min_lr, warmup_start_factor=start)
        tsched = T.SequentialLR(topt, [T.LinearLR(topt, start, 1.0, warmup), T.CosineAnnealingLR(topt, total - warmup,
                                                                                                 min_lr)], [warmup])
        for step in range(total + 1):
            if step:
                topt.step()
                sched.step()
                tsched.step()
            ours, theirs = opt.param_groups[0]["lr"], topt.param_groups[0]["lr"]
            assert math.isclose(ours, theirs, rel_tol=REL, abs_tol=1e-300), step


def test_inverse_time_matches_torch_lambda() -> None:
    torch = pytest.importorskip("torch")
    for rate, steps, staircase in [(0.5, 10, False), (0.5, 10, True), (2.0, 1, False)]:
        opt = fo.SGD([np.zeros(2)], lr=0.1)
        topt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        sched = F.InverseTimeLR(opt, decay_rate=rate, decay_steps=steps, staircase=staircase)

        def factor(t: int, rate: float = rate, steps: int = steps, staircase: bool = staircase) -> float:
            return 1 / (1 + rate * (t // steps if staircase else t / steps))

        tsched = torch.optim.lr_scheduler.LambdaLR(topt, factor)
        values = []
        for _ in range(120):
            topt.step()
            sched.step()
            tsched.step()
            values.append(opt.param_groups[0]["lr"])
            assert math.isclose(values[-1], topt.param_groups[0]["lr"], rel_tol=REL, abs_tol=0.0)
        assert len(set(values)) > 10


# ---- checkpoints -----------------------------------------------------------------------------
EXTRA_RESUME_CASES = [
    Case("InverseTimeLR", lambda m, o: m.InverseTimeLR(o, decay_rate=0.3, decay_steps=4)),
    Case("InverseTimeLR-staircase-adam", lambda m, o: m.InverseTimeLR(o, 1.0, 10, staircase=True), "adam",
         (0.1, 0.01)),
    Case("WarmupCosineLR", lambda m, o: m.WarmupCosineLR(o, 10, 120, min_lr=1e-3, warmup_start_factor=0.1)),
    Case("WarmupCosineLR-adam-2groups", lambda m, o: m.WarmupCosineLR(o, 0, 100, min_lr=[0.0, 1e-4]), "adam",
         (0.1, 0.01)),
    Case("SequentialLR-onecycle-then-cyclic",
         lambda m, o: m.SequentialLR(o, [m.OneCycleLR(o, 0.5, 60), m.CyclicLR(o, 0.01, 0.1, 7)], [60]),
         momentum=True),
    Case("SequentialLR-nested-chain",
         lambda m, o: m.SequentialLR(o, [m.StepLR(o, 5, 0.8),
                                         m.ChainedScheduler([m.ExponentialLR(o, 0.98), m.StepLR(o, 4, 0.9)])], [40])),
]
RESUME_CASES = CASES + EXTRA_RESUME_CASES


def is_plain(value: Any) -> bool:
    """Only what pickles anywhere: containers of numbers, strings, None."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def resumed_trace(case: Case, at: int, optimizer_first: bool) -> list[tuple[float, ...]]:
    """Run `at` steps, checkpoint through pickle, rebuild everything and finish the run."""
    opt, grads = make_pair(case)
    sched = case.build(F, opt)
    trace = [read(opt, case)]
    for _ in range(at):
        opt.step(grads)
        sched.step()
        trace.append(read(opt, case))
    state = sched.state_dict()
    assert is_plain(state), state
    blob = pickle.dumps({"optimizer": opt.state_dict(), "scheduler": state})
    del opt, sched
    saved = pickle.loads(blob)
    opt, grads = make_pair(case)
    if optimizer_first:  # the order that breaks torch's SequentialLR
        opt.load_state_dict(saved["optimizer"])
        sched = case.build(F, opt)
    else:  # the order torch recommends
        sched = case.build(F, opt)
        opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    assert read(opt, case) == trace[-1], "loading did not restore the values of the saved step"
    for _ in range(case.steps - at):
        opt.step(grads)
        sched.step()
        trace.append(read(opt, case))
    return trace


@pytest.mark.parametrize("optimizer_first", [False, True], ids=["scheduler-built-first", "optimizer-loaded-first"])
@pytest.mark.parametrize("case", RESUME_CASES, ids=lambda c: c.id)
def test_resume_gives_the_uninterrupted_run(case: Case, optimizer_first: bool) -> None:
    full = fastoptim_trace(case)
    assert_schedule_moves(full, case)
    for at in sorted({1, 9, 10, 11, 29, 30, 31, 61, case.steps // 2 + 3, case.steps - 1}):
        assert resumed_trace(case, at, optimizer_first) == full, f"resumed at step {at}"


def test_reduce_lr_on_plateau_resumes_exactly() -> None:
    metrics = plateau_metrics("min")
    kwargs: dict[str, Any] = dict(factor=0.5, patience=2, cooldown=3, min_lr=[1e-3, 1e-4])

    def fresh() -> tuple[Any, Any]:
        opt = fo.Adam([{"params": [np.zeros(2)], "lr": 0.1}, {"params": [np.zeros(2)], "lr": 0.01}])
        return opt, F.ReduceLROnPlateau(opt, **kwargs)

    opt, sched = fresh()
    full = []
    for metric in metrics:
        sched.step(metric)
        full.append(sched.get_last_lr())
    assert len({lrs[0] for lrs in full}) > 3
    for at in (1, 17, 40, 41, 42, 100):
        opt, sched = fresh()
        resumed = []
        for metric in metrics[:at]:
            sched.step(metric)
            resumed.append(sched.get_last_lr())
        blob = pickle.dumps(sched.state_dict())
        opt, sched = fresh()
        sched.load_state_dict(pickle.loads(blob))
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups] == resumed[-1]
        for metric in metrics[at:]:
            sched.step(metric)
            resumed.append(sched.get_last_lr())
        assert resumed == full, f"resumed at step {at}"


def test_sequential_last_epoch_replays_to_that_step() -> None:
    """SequentialLR(..., last_epoch=k - 1) stands where a fresh run stands after k steps (torch's does not)."""
    def build(opt: Any, last_epoch: int = -1) -> F.SequentialLR:
        return F.SequentialLR(opt, [F.LinearLR(opt, 0.1, 1.0, 10), F.ExponentialLR(opt, 0.9)], [10],
                              last_epoch=last_epoch)

    opt = fo.SGD([np.zeros(2)], lr=0.1)
    sched = build(opt)
    full = [opt.param_groups[0]["lr"]]
    for _ in range(40):
        sched.step()
        full.append(opt.param_groups[0]["lr"])
    for k in (1, 5, 10, 11, 25):
        opt = fo.SGD([np.zeros(2)], lr=0.1)
        sched = build(opt, last_epoch=k - 1)
        assert sched.last_epoch == k
        rest = [opt.param_groups[0]["lr"]]
        for _ in range(40 - k):
            sched.step()
            rest.append(opt.param_groups[0]["lr"])
        assert rest == full[k:], f"last_epoch={k - 1}"


def test_callable_objects_are_saved_and_plain_functions_skipped() -> None:
    opt = fo.SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}], lr=0.1)
    sched = F.LambdaLR(opt, [WarmupFactor(10), lambda t: 0.9**t])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"steps": 10}, None]
    pickle.dumps(state)
    other_opt = fo.SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}], lr=0.1)
    factor = WarmupFactor(99)
    other = F.LambdaLR(other_opt, [factor, lambda t: 0.9**t])
    other.load_state_dict(state)
    assert factor.steps == 10
    cyclic = F.CyclicLR(fo.SGD([np.zeros(2)], momentum=0.9), 0.01, 0.1, 5, scale_fn=HalvingScale(0.25))
    assert cyclic.state_dict()["_scale_fn_custom"] == {"rate": 0.25}


def test_state_dict_is_a_copy() -> None:
    opt = fo.SGD([np.zeros(2)], lr=0.1)
    sched = F.SequentialLR(opt, [F.StepLR(opt, 3), F.ExponentialLR(opt, 0.5)], [5])
    state = sched.state_dict()
    before = pickle.dumps(state)
    for _ in range(9):
        sched.step()
    assert pickle.dumps(state) == before


def test_load_state_dict_refuses_what_does_not_fit_and_changes_nothing() -> None:
    opt = fo.SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}], lr=0.1)
    sched = F.CosineAnnealingLR(opt, 10)
    sched.step()
    before, lrs = sched.state_dict(), [g["lr"] for g in opt.param_groups]
    other = F.StepLR(fo.SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}], lr=0.1), 3)
    with pytest.raises(ValueError, match=r"lacks .*T_max"):
        sched.load_state_dict(other.state_dict())
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        sched.load_state_dict([1, 2])  # type: ignore[arg-type]
    one_group = F.CosineAnnealingLR(fo.SGD([np.zeros(2)], lr=0.1), 10).state_dict()
    with pytest.raises(ValueError, match="1 param groups; the optimizer has 2"):
        sched.load_state_dict(one_group)
    wd = F.CosineAnnealingLR(fo.SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}], weight_decay=0.1), 10,
                             param_name="weight_decay")
    with pytest.raises(ValueError, match="schedules 'weight_decay'"):
        sched.load_state_dict(wd.state_dict())
    assert sched.state_dict() == before
    assert [g["lr"] for g in opt.param_groups] == lrs


def test_sequential_load_checks_every_child_before_changing_anything() -> None:
    opt = sgd()
    seq = F.SequentialLR(opt, [F.StepLR(opt, 3), F.ExponentialLR(opt, 0.5), F.StepLR(opt, 2)], [5, 9])
    for _ in range(3):
        seq.step()
    before, lr = seq.state_dict(), opt.param_groups[0]["lr"]
    other = F.SequentialLR(opt, [F.StepLR(opt, 4), F.ExponentialLR(opt, 0.9), F.ExponentialLR(opt, 0.9)], [5, 9])
    for _ in range(7):
        other.step()
    state = other.state_dict()
    opt.param_groups[0]["lr"] = lr
    with pytest.raises(ValueError, match=r"lacks .*step_size"):  # only the last child does not fit
        seq.load_state_dict(state)
    assert seq.state_dict() == before
    assert opt.param_groups[0]["lr"] == lr


# ---- any optimizer, any hyper-parameter -------------------------------------------------------
class DuckOptimizer:
    """Not a fastoptim optimizer: just param_groups."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr, "momentum": 0.0}]


class Wrapper:
    """Like Lookahead: exposes its inner optimizer's param_groups."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def param_groups(self) -> Any:
        return self.inner.param_groups


def test_any_object_with_param_groups_can_be_scheduled() -> None:
    duck = DuckOptimizer(0.1)
    sched = F.OneCycleLR(duck, 1.0, total_steps=50)
    for t in range(1, 51):
        sched.step()
        assert duck.param_groups[0]["lr"] == schedules.one_cycle_lr(t, 1.0, 50)
        assert duck.param_groups[0]["momentum"] == schedules.one_cycle_momentum(t, 50)


def test_wrapper_exposing_inner_groups_counts_as_the_same_optimizer() -> None:
    inner = fo.SGD([np.zeros(2)], lr=0.1)
    wrapped = Wrapper(inner)
    seq = F.SequentialLR(wrapped, [F.LinearLR(inner, 0.5, 1.0, 4), F.ExponentialLR(wrapped, 0.5)], [4])
    for _ in range(6):
        seq.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2, rel=REL)


def test_lookahead_is_scheduled_through_its_inner_groups() -> None:
    if not hasattr(fo, "Lookahead"):
        pytest.skip("this build has no fastoptim.Lookahead")

    def run(wrap: bool, resume_at: int | None = None) -> list[tuple[float, float]]:
        def build() -> tuple[Any, Any]:
            inner = fo.Adam([np.zeros(3)], lr=0.1)
            opt = fo.Lookahead(inner, k=3) if wrap else inner
            warmup = F.LinearLR(inner, 0.1, 1.0, 10)  # bound to the inner optimizer: the same groups
            return opt, F.SequentialLR(opt, [warmup, F.OneCycleLR(opt, 0.5, total_steps=50)], [10])

        opt, sched = build()
        seen = []
        for t in range(60):
            if t == resume_at:
                blob = pickle.dumps((opt.state_dict(), sched.state_dict()))
                opt, sched = build()
                opt_state, sched_state = pickle.loads(blob)
                opt.load_state_dict(opt_state)
                sched.load_state_dict(sched_state)
            opt.step([np.ones(3)])
            sched.step()
            seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        return seen

    plain = run(wrap=False)
    assert len(set(plain)) > 40
    assert run(wrap=True) == plain
    assert run(wrap=True, resume_at=27) == plain


def test_param_name_schedules_weight_decay_and_the_optimizer_uses_it() -> None:
    w = np.ones(3)
    opt = fo.SGD([w], lr=1.0, weight_decay=0.1)
    sched = F.StepLR(opt, step_size=2, gamma=0.5, param_name="weight_decay")
    lr_opt = fo.SGD([np.ones(3)], lr=0.1)
    lr_sched = F.StepLR(lr_opt, step_size=2, gamma=0.5)
    assert opt.param_groups[0]["initial_weight_decay"] == 0.1
    assert "initial_lr" not in opt.param_groups[0]
    expected = 1.0
    for _ in range(7):
        decay = opt.param_groups[0]["weight_decay"]
        assert decay == lr_opt.param_groups[0]["lr"]  # the same schedule, on another key
        opt.step([np.zeros(3)])
        expected *= 1 - decay  # w <- w - lr * (0 + weight_decay * w)
        np.testing.assert_allclose(w, expected, rtol=1e-14)
        sched.step()
        lr_sched.step()
        assert opt.param_groups[0]["lr"] == 1.0
        assert sched.get_last_lr() == [opt.param_groups[0]["weight_decay"]]
    assert opt.param_groups[0]["weight_decay"] == 0.1 * 0.5**3


def test_param_name_schedules_one_element_of_betas() -> None:
    opt = fo.Adam([np.zeros(2)], lr=0.1, betas=(0.9, 0.99))
    sched = F.LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=4, param_name="betas[1]")
    assert opt.param_groups[0]["initial_betas[1]"] == 0.99
    seen = []
    for t in range(6):
        betas = opt.param_groups[0]["betas"]
        assert isinstance(betas, tuple)
        assert betas[0] == 0.9
        assert betas[1] == pytest.approx(schedules.linear_lr(t, 0.99, 0.5, 1.0, 4), rel=REL)
        seen.append(betas[1])
        opt.step([np.ones(2)])
        sched.step()
    assert seen[0] == 0.495
    assert seen[-1] == pytest.approx(0.99, rel=REL)


def test_one_cycle_on_another_key_keeps_its_own_group_entries() -> None:
    opt = fo.AdamW([np.zeros(2)], lr=0.1, weight_decay=0.01)
    sched = F.OneCycleLR(opt, max_lr=0.05, total_steps=20, cycle_momentum=False, param_name="weight_decay")
    group = opt.param_groups[0]
    assert group["max_weight_decay"] == 0.05
    assert "max_lr" not in group
    for t in range(1, 21):
        sched.step()
        assert group["weight_decay"] == schedules.one_cycle_lr(t, 0.05, 20)
        assert group["lr"] == 0.1


# ---- ReduceLROnPlateau by hand ------------------------------------------------------------------
def plateau_run(metrics: list[float], lr: float = 1.0, **kwargs: Any) -> list[float]:
    opt = DuckOptimizer(lr)
    sched = F.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for metric in metrics:
        sched.step(metric)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_plateau_patience_and_factor() -> None:
    # best 1 at step 1; steps 2, 3 are bad (2 > patience 1): halve at step 3, counter restarts.
    assert plateau_run([1, 1, 1, 1, 1, 0.5, 0.6], factor=0.5, patience=1) == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_plateau_cooldown_ignores_bad_steps() -> None:
    metrics = [1.0] * 9
    assert plateau_run(metrics, factor=0.5, patience=0) == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625,
                                                            0.0078125, 0.00390625]
    assert plateau_run(metrics, factor=0.5, patience=0, cooldown=2) == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125,
                                                                        0.125]


def test_plateau_threshold_modes_and_max_mode() -> None:
    small_gains = [1.0, 0.9996, 0.9992, 0.9988, 0.9984]  # 4e-4 better each step
    # rel 1e-3: only step 4 beats best * 0.999 (best = 1); step 5 does not beat 0.9988 * 0.999
    assert plateau_run(small_gains, factor=0.5, patience=0, threshold=1e-3) == [1, 0.5, 0.25, 0.25, 0.125]
    assert plateau_run(small_gains, factor=0.5, patience=0, threshold=1e-4) == [1] * 5
    assert plateau_run(small_gains, factor=0.5, patience=0, threshold=3e-4, threshold_mode="abs") == [1] * 5
    assert plateau_run(small_gains, factor=0.5, patience=0, threshold=5e-4, threshold_mode="abs") == [
        1, 0.5, 0.5, 0.25, 0.25]
    rising = [1.0, 2.0, 3.0, 3.0, 3.0]
    assert plateau_run(rising, mode="max", factor=0.5, patience=1) == [1, 1, 1, 1, 0.5]
    assert plateau_run(rising, mode="min", factor=0.5, patience=1) == [1, 1, 0.5, 0.5, 0.25]


def test_plateau_min_lr_and_eps() -> None:
    assert plateau_run([1.0] * 6, factor=0.5, patience=0, min_lr=0.3) == [1, 0.5, 0.3, 0.3, 0.3, 0.3]
    assert plateau_run([1.0] * 4, lr=1e-7, factor=0.5, patience=0, eps=1e-7) == [1e-7] * 4  # changes < eps skipped
    assert plateau_run([1.0] * 3, lr=1e-7, factor=0.5, patience=0, eps=1e-8) == [1e-7, 5e-8, 2.5e-8]


# ---- bad arguments ---------------------------------------------------------------------------
def sgd(groups: int = 1) -> Any:
    return fo.SGD([{"params": [np.zeros(2)]} for _ in range(groups)], lr=0.1, momentum=0.9)


def sequential_with_foreign_child() -> Any:
    opt = sgd()
    return F.SequentialLR(opt, [F.StepLR(opt, 3), F.ExponentialLR(sgd(), 0.9)], [5])


def one_cycle_past_the_end() -> None:
    sched = F.OneCycleLR(sgd(), 0.1, total_steps=3)
    for _ in range(4):
        sched.step()


BAD = [
    (lambda: F.CosineAnnealingLR(sgd(), T_max=0), ValueError, "T_max must be >= 1"),
    (lambda: F.CosineAnnealingLR(sgd(), T_max=10.0), TypeError, "T_max must be an integer"),
    (lambda: F.CosineAnnealingLR(sgd(), 10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda: F.StepLR(sgd(), 3, gamma=-0.1), ValueError, "gamma must be >= 0"),
    (lambda: F.StepLR(sgd(), 0), ValueError, "step_size must be >= 1"),
    (lambda: F.StepLR(sgd(), 2.5), TypeError, "step_size must be an integer"),
    (lambda: F.StepLR(sgd(), 3, gamma="0.1"), TypeError, "gamma must be a real number"),
    (lambda: F.ExponentialLR(sgd(), gamma=-0.5), ValueError, "gamma"),
    (lambda: F.ExponentialLR(sgd(), gamma=math.nan), ValueError, "gamma must be finite"),
    (lambda: F.MultiStepLR(sgd(), milestones=[30, 10]), ValueError, "milestones must be in increasing order"),
    (lambda: F.MultiStepLR(sgd(), milestones=[10, -1]), ValueError, r"milestones\[1\]"),
    (lambda: F.MultiStepLR(sgd(), milestones=5), TypeError, "milestones must be a list"),
    (lambda: F.ConstantLR(sgd(), factor=1.5), ValueError, "factor must be <= 1"),
    (lambda: F.ConstantLR(sgd(), factor=0.0), ValueError, "factor must be > 0"),
    (lambda: F.ConstantLR(sgd(), total_iters=0), ValueError, "total_iters"),
    (lambda: F.LinearLR(sgd(), start_factor=0.0), ValueError, "start_factor"),
    (lambda: F.LinearLR(sgd(), end_factor=2.0), ValueError, "end_factor"),
    (lambda: F.PolynomialLR(sgd(), 10, power=-1.0), ValueError, "power"),
    (lambda: F.PolynomialLR(sgd(), total_iters=0), ValueError, "total_iters"),
    (lambda: F.CosineAnnealingWarmRestarts(sgd(), T_0=0), ValueError, "T_0"),
    (lambda: F.CosineAnnealingWarmRestarts(sgd(), 5, T_mult=0), ValueError, "T_mult"),
    (lambda: F.CosineAnnealingWarmRestarts(sgd(), 5, T_mult=1.5), TypeError, "T_mult"),
    (lambda: F.CosineAnnealingWarmRestarts(sgd(), 5).step(-1), ValueError, "epoch"),
    (lambda: F.OneCycleLR(sgd(), 0.1), ValueError, "total_steps"),
    (lambda: F.OneCycleLR(sgd(), 0.1, total_steps=0), ValueError, "total_steps"),
    (lambda: F.OneCycleLR(sgd(), 0.1, epochs=0, steps_per_epoch=3), ValueError, "epochs"),
    (lambda: F.OneCycleLR(sgd(), 0.1, 100, pct_start=1.5), ValueError, "pct_start"),
    (lambda: F.OneCycleLR(sgd(), 0.1, 10, pct_start=0.1), ValueError, "pct_start"),
    (lambda: F.OneCycleLR(sgd(), 0.1, 100, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda: F.OneCycleLR(sgd(), [0.1, 0.2], 100), ValueError, "max_lr has 2 values"),
    (lambda: F.OneCycleLR(sgd(), 0.1, 100, div_factor=0), ValueError, "div_factor"),
    (lambda: F.OneCycleLR(object(), 0.1, 10), TypeError, "optimizer must have a param_groups list"),
    (one_cycle_past_the_end, ValueError, "past total_steps=3"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, mode="sawtooth"), ValueError, "mode must be one of"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, step_size_up=0), ValueError, "step_size_up"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, step_size_down=-1), ValueError, "step_size_down"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, scale_fn=3), TypeError, "scale_fn must be callable"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, scale_fn=abs, scale_mode="epoch"), ValueError, "scale_mode"),
    (lambda: F.CyclicLR(sgd(), 0.01, 0.1, gamma=-1.0), ValueError, "gamma"),
    (lambda: F.CyclicLR(_LrOnly(), 0.01, 0.1), ValueError, "cycle_momentum=True needs"),
    (lambda: F.OneCycleLR(_LrOnly(), 0.1, 10), ValueError, "cycle_momentum=True needs"),
    (lambda: F.CyclicLR(sgd(), -0.01, 0.1), ValueError, "base_lr"),
    (lambda: F.LambdaLR(sgd(), lr_lambda=0.5), TypeError, "lr_lambda must be callable"),
    (lambda: F.LambdaLR(sgd(2), [lambda t: 1.0]), ValueError, "lr_lambda has 1 functions; the optimizer has 2"),
    (lambda: F.MultiplicativeLR(sgd(2), [lambda t: 1.0, None]), TypeError, r"lr_lambda\[1\] must be callable"),
    (lambda: F.InverseTimeLR(sgd(), decay_rate=0.5, decay_steps=0), ValueError, "decay_steps"),
    (lambda: F.InverseTimeLR(sgd(), decay_rate=-0.5), ValueError, "decay_rate"),
    (lambda: F.WarmupCosineLR(sgd(), 100, 100), ValueError, "total_steps must be > warmup_steps"),
    (lambda: F.WarmupCosineLR(sgd(), 10, 100, warmup_start_factor=2.0), ValueError, "warmup_start_factor"),
    (lambda: F.WarmupCosineLR(sgd(2), 10, 100, min_lr=[0.0]), ValueError, "min_lr has 1 values"),
    (sequential_with_foreign_child, ValueError, r"schedulers\[1\] \(ExponentialLR\) is bound to a different"),
    (lambda: F.SequentialLR(sgd(), [], []), ValueError, "at least one scheduler"),
    (lambda: F.SequentialLR(sgd(), [1, 2], [3]), TypeError, r"schedulers\[0\] must be a fastoptim scheduler"),
    (lambda: (lambda o: F.SequentialLR(o, [F.StepLR(o, 3), F.StepLR(o, 4)], [5, 8]))(sgd()), ValueError,
     "one entry fewer"),
    (lambda: (lambda o: F.SequentialLR(o, [F.StepLR(o, 3), F.StepLR(o, 4), F.StepLR(o, 5)], [8, 5]))(sgd()),
     ValueError, "milestones must be strictly increasing"),
    (lambda: (lambda o: F.SequentialLR(o, [F.StepLR(o, 3), F.ReduceLROnPlateau(o)], [5]))(sgd()), ValueError,
     "ReduceLROnPlateau"),
    (lambda: (lambda o: F.SequentialLR(o, [F.StepLR(o, 3), F.StepLR(o, 3, param_name="momentum")], [5]))(sgd()),
     ValueError, "different hyper-parameters"),
    (lambda: (lambda o: F.ChainedScheduler([F.StepLR(o, 3), F.StepLR(sgd(), 3)]))(sgd()), ValueError,
     r"schedulers\[1\] \(StepLR\) is bound to a different"),
    (lambda: F.ChainedScheduler([]), ValueError, "ChainedScheduler needs at least one scheduler"),
    (lambda: F.ReduceLROnPlateau(sgd(), mode="avg"), ValueError, "mode must be one of"),
    (lambda: F.ReduceLROnPlateau(sgd(), factor=1.0), ValueError, "factor must be < 1"),
    (lambda: F.ReduceLROnPlateau(sgd(), threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda: F.ReduceLROnPlateau(sgd(), patience=-1), ValueError, "patience"),
    (lambda: F.ReduceLROnPlateau(sgd(), cooldown=0.5), TypeError, "cooldown"),
    (lambda: F.ReduceLROnPlateau(sgd(2), min_lr=[0.1]), ValueError, "min_lr has 1 values"),
    (lambda: F.ReduceLROnPlateau(sgd()).step("low"), TypeError, "metrics must be a number"),
    (lambda: F.StepLR(sgd(), 3, param_name="learning_rate"), ValueError, "param_name='learning_rate'"),
    (lambda: F.StepLR(sgd(), 3, param_name=0), TypeError, "param_name must be a str"),
    (lambda: F.StepLR(sgd(), 3, param_name="momentum[0]"), TypeError, "not a tuple"),
    (lambda: F.StepLR(fo.Adam([np.zeros(2)]), 3, param_name="betas[2]"), ValueError, "has 2 elements"),
    (lambda: F.StepLR(sgd(), 3, last_epoch=4), ValueError, "has no 'initial_lr'"),
    (lambda: F.StepLR(sgd(), 3, last_epoch=-2), ValueError, "last_epoch"),
    (lambda: F.StepLR(object(), 3), TypeError, "param_groups"),
    (lambda: F.StepLR(_NoGroups(), 3), ValueError, "param_groups is empty"),
]


class _LrOnly:
    def __init__(self) -> None:
        self.param_groups = [{"lr": 0.1}]


class _NoGroups:
    def __init__(self) -> None:
        self.param_groups: list[dict[str, Any]] = []


@pytest.mark.parametrize(("make", "error", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_naming_the_argument(make: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_adding_a_group_after_the_scheduler_is_refused() -> None:
    opt = sgd()
    sched = F.ExponentialLR(opt, 0.5)
    opt.add_param_group({"params": [np.zeros(2)]})
    with pytest.raises(ValueError, match="the optimizer has 2 param groups; ExponentialLR was built for 1"):
        sched.step()


# ---- a scheduler that cannot start leaves the optimizer as it was (issue 15, case 11) ----------
def _boom(step: int) -> float:
    if step > 1:
        raise ArithmeticError("a user function that fails on its third call")
    return 1.0


def _failing_constructions() -> list[tuple[str, Callable[[Any], Any], type[Exception]]]:
    cyc = dict(base_lr=0.01, max_lr=0.1)
    return [
        ("CyclicLR step_size_up=0", lambda o: F.CyclicLR(o, **cyc, step_size_up=0), ValueError),
        ("CyclicLR mode", lambda o: F.CyclicLR(o, **cyc, mode="bogus"), ValueError),
        ("CyclicLR gamma", lambda o: F.CyclicLR(o, **cyc, gamma=-1.0), ValueError),
        ("CyclicLR max_lr per group", lambda o: F.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2, 0.3]), ValueError),
        ("CyclicLR momentum bounds", lambda o: F.CyclicLR(o, **cyc, base_momentum=-1.0), ValueError),
        ("OneCycleLR max_momentum", lambda o: F.OneCycleLR(o, max_lr=0.1, total_steps=10, max_momentum="x"),
         TypeError),
        ("OneCycleLR pct_start", lambda o: F.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=2.0), ValueError),
        ("OneCycleLR no steps", lambda o: F.OneCycleLR(o, max_lr=0.1), ValueError),
        ("LambdaLR raising", lambda o: F.LambdaLR(o, lambda t: 1 / 0), ZeroDivisionError),
        ("LambdaLR not callable", lambda o: F.LambdaLR(o, 3), TypeError),
        ("StepLR gamma", lambda o: F.StepLR(o, step_size=2, gamma="x"), TypeError),
        ("StepLR resume without initial_lr", lambda o: F.StepLR(o, step_size=2, last_epoch=3), ValueError),
        ("ExponentialLR param_name", lambda o: F.ExponentialLR(o, gamma=0.9, param_name="nothing"), ValueError),
        ("CosineAnnealingLR T_max", lambda o: F.CosineAnnealingLR(o, T_max=-1), ValueError),
        ("WarmupCosineLR", lambda o: F.WarmupCosineLR(o, warmup_steps=5, total_steps=5), ValueError),
        ("SequentialLR milestones", lambda o: F.SequentialLR(o, [F.StepLR(o, 2), F.StepLR(o, 3)], milestones=[]),
         ValueError),
        ("SequentialLR replay raising", lambda o: F.SequentialLR(
            o, [F.LambdaLR(o, _boom), F.StepLR(o, 3)], milestones=[5], last_epoch=3), ArithmeticError),
        ("ReduceLROnPlateau factor", lambda o: F.ReduceLROnPlateau(o, factor=2.0), ValueError),
    ]


@pytest.mark.parametrize(("what", "build", "error"), _failing_constructions(),
                         ids=[c[0] for c in _failing_constructions()])
def test_a_scheduler_that_fails_to_start_leaves_the_groups_untouched(what, build, error) -> None:
    opt = fo.SGD([{"params": [np.zeros(3)]}, {"params": [np.zeros(2)], "lr": 0.05}], lr=0.02, momentum=0.9)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(error):
        build(opt)
    if what.startswith("SequentialLR"):  # its children wrote their initial values as they were built
        before = [{**b, "initial_lr": b["lr"]} for b in before]
    assert [dict(g) for g in opt.param_groups] == before
