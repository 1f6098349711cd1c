"""fastoptim.schedules: each closed form agrees with its scheduler at every step, hits its known
values, and refuses bad arguments naming them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastoptim as fo
import fastoptim.lr_scheduler as F
from fastoptim import schedules as S

REL = 1e-12  # closed form vs torch's step-by-step recursion: rounding only (measured below 1e-13 over 200 steps)
BASES = (0.1, 0.03)  # two param groups


@dataclass(frozen=True)
class Pair:
    id: str
    build: Callable[[Any], Any]  # optimizer -> scheduler
    lr: Callable[[int, float, int], float]  # (step, base lr, group index) -> lr
    momentum: Callable[[int, int], float] | None = None  # (step, group index) -> momentum or betas[0]
    optimizer: str = "sgd"
    steps: int = 200


def halving(x: float) -> float:
    return 0.5 ** (x - 1)


PAIRS = [
    Pair("step", lambda o: F.StepLR(o, 7, 0.5), lambda t, b, i: S.step_lr(t, b, 7, 0.5)),
    Pair("multistep", lambda o: F.MultiStepLR(o, [0, 3, 10, 10, 50], 0.5),
         lambda t, b, i: S.multistep_lr(t, b, [0, 3, 10, 10, 50], 0.5)),
    Pair("constant", lambda o: F.ConstantLR(o, 0.25, 20), lambda t, b, i: S.constant_lr(t, b, 0.25, 20)),
    Pair("linear-warmup", lambda o: F.LinearLR(o, 0.1, 1.0, 30), lambda t, b, i: S.linear_lr(t, b, 0.1, 1.0, 30)),
    Pair("linear-decay", lambda o: F.LinearLR(o, 1.0, 0.0, 150), lambda t, b, i: S.linear_lr(t, b, 1.0, 0.0, 150)),
    Pair("exponential", lambda o: F.ExponentialLR(o, 0.97), lambda t, b, i: S.exponential_lr(t, b, 0.97)),
    Pair("polynomial", lambda o: F.PolynomialLR(o, 120, 2.0), lambda t, b, i: S.polynomial_lr(t, b, 120, 2.0)),
    Pair("cosine-cycles", lambda o: F.CosineAnnealingLR(o, 30, 0.001),
         lambda t, b, i: S.cosine_annealing_lr(t, b, 30, 0.001)),
    Pair("cosine-to-0", lambda o: F.CosineAnnealingLR(o, 200), lambda t, b, i: S.cosine_annealing_lr(t, b, 200)),
    Pair("warm-restarts", lambda o: F.CosineAnnealingWarmRestarts(o, 5, 2, 1e-3),
         lambda t, b, i: S.cosine_annealing_warm_restarts_lr(t, b, 5, 2, 1e-3)),
    Pair("warm-restarts-fixed", lambda o: F.CosineAnnealingWarmRestarts(o, 13),
         lambda t, b, i: S.cosine_annealing_warm_restarts_lr(t, b, 13)),
    Pair("one-cycle", lambda o: F.OneCycleLR(o, [1.0, 0.5], 200), lambda t, b, i: S.one_cycle_lr(t, [1.0, 0.5][i], 200),
         lambda t, i: S.one_cycle_momentum(t, 200)),
    Pair("one-cycle-three-phase-linear-adam",
         lambda o: F.OneCycleLR(o, 0.4, 200, pct_start=0.2, anneal_strategy="linear", base_momentum=0.8,
                                max_momentum=0.9, div_factor=8.0, final_div_factor=50.0, three_phase=True),
         lambda t, b, i: S.one_cycle_lr(t, 0.4, 200, 0.2, "linear", 8.0, 50.0, True),
         lambda t, i: S.one_cycle_momentum(t, 200, 0.8, 0.9, 0.2, "linear", True), "adam"),
    Pair("cyclic-triangular", lambda o: F.CyclicLR(o, 0.01, [0.2, 0.1], 9),
         lambda t, b, i: S.cyclic_lr(t, 0.01, [0.2, 0.1][i], 9),
         lambda t, i: S.cyclic_momentum(t, 0.8, 0.9, 9)),
    Pair("cyclic-triangular2-adam", lambda o: F.CyclicLR(o, 0.01, 0.2, 10, 6, "triangular2", base_momentum=0.85,
                                                         max_momentum=0.95),
         lambda t, b, i: S.cyclic_lr(t, 0.01, 0.2, 10, 6, "triangular2"),
         lambda t, i: S.cyclic_momentum(t, 0.85, 0.95, 10, 6, "triangular2"), "adam"),
    Pair("cyclic-exp-range", lambda o: F.CyclicLR(o, 0.01, 0.2, 9, 5, "exp_range", 0.99),
         lambda t, b, i: S.cyclic_lr(t, 0.01, 0.2, 9, 5, "exp_range", 0.99),
         lambda t, i: S.cyclic_momentum(t, 0.8, 0.9, 9, 5, "exp_range", 0.99)),
    Pair("cyclic-scale-fn", lambda o: F.CyclicLR(o, 0.01, 0.2, 4, 8, scale_fn=halving, cycle_momentum=False),
         lambda t, b, i: S.cyclic_lr(t, 0.01, 0.2, 4, 8, scale_fn=halving)),
    Pair("inverse-time", lambda o: F.InverseTimeLR(o, 0.5, 10), lambda t, b, i: S.inverse_time_lr(t, b, 0.5, 10)),
    Pair("inverse-time-staircase", lambda o: F.InverseTimeLR(o, 1.0, 7, staircase=True),
         lambda t, b, i: S.inverse_time_lr(t, b, 1.0, 7, staircase=True)),
    Pair("warmup-cosine", lambda o: F.WarmupCosineLR(o, 20, 150, min_lr=[1e-3, 0.0], warmup_start_factor=0.05),
         lambda t, b, i: S.warmup_cosine_lr(t, b, 20, 150, [1e-3, 0.0][i], 0.05)),
    Pair("sequential",
         lambda o: F.SequentialLR(o, [F.LinearLR(o, 0.1, 1.0, 10), F.CosineAnnealingLR(o, 50, 1e-3),
                                      F.ExponentialLR(o, 0.95)], [10, 60]),
         lambda t, b, i: S.sequential(t, [lambda s: S.linear_lr(s, b, 0.1, 1.0, 10),
                                          lambda s: S.cosine_annealing_lr(s, b, 50, 1e-3),
                                          lambda s: S.exponential_lr(s, b, 0.95)], [10, 60])),
]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.id)
def test_closed_form_agrees_with_its_scheduler_at_every_step(pair: Pair) -> None:
    arrays = [np.zeros(3) for _ in BASES]
    groups = [{"params": [a], "lr": lr} for a, lr in zip(arrays, BASES)]
    opt = fo.SGD(groups, momentum=0.9) if pair.optimizer == "sgd" else fo.Adam(groups)
    sched = pair.build(opt)
    seen = set()
    for t in range(pair.steps + 1):
        if t:
            opt.step([np.ones(3) for _ in arrays])
            sched.step()
        for i, (group, base) in enumerate(zip(opt.param_groups, BASES)):
            want = pair.lr(t, base, i)
            assert math.isclose(group["lr"], want, rel_tol=REL, abs_tol=0.0), f"step {t}, group {i}"
            seen.add(want)
            if pair.momentum is not None:
                momentum = group["betas"][0] if "betas" in group else group["momentum"]
                assert math.isclose(momentum, pair.momentum(t, i), rel_tol=REL, abs_tol=0.0), f"step {t}, group {i}"
    assert len(seen) > len(BASES), "the schedule never moves; the comparison would prove nothing"


# ---- known values ------------------------------------------------------------------------------
def test_piecewise_constant_values() -> None:
    assert [S.step_lr(t, 1.0, 3, 0.5) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert [S.multistep_lr(t, 1.0, [2, 4, 4], 0.1) for t in (0, 1, 2, 3, 4, 9)] == pytest.approx(
        [1, 1, 0.1, 0.1, 1e-3, 1e-3], rel=REL)
    assert [S.constant_lr(t, 1.0, 0.5, 2) for t in range(4)] == [0.5, 0.5, 1.0, 1.0]


def test_linear_and_polynomial_values() -> None:
    assert [S.linear_lr(t, 2.0, 0.25, 1.0, 3) for t in range(5)] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0], rel=REL)
    assert S.linear_lr(10, 2.0, 1.0, 0.5, 4) == 1.0
    assert [S.polynomial_lr(t, 1.0, 4, 2.0) for t in range(6)] == [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    assert S.exponential_lr(3, 2.0, 0.5) == 0.25


def test_cosine_values() -> None:
    assert S.cosine_annealing_lr(0, 1.0, 10, 0.2) == 1.0
    assert S.cosine_annealing_lr(5, 1.0, 10, 0.2) == pytest.approx(0.6, rel=REL)
    assert S.cosine_annealing_lr(10, 1.0, 10, 0.2) == pytest.approx(0.2, rel=REL)
    assert S.cosine_annealing_lr(20, 1.0, 10, 0.2) == pytest.approx(1.0, rel=REL)  # no restart: the cosine goes on
    assert S.cosine_annealing_lr(2.5, 1.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), rel=REL)


def test_warm_restarts_restart_where_the_periods_end() -> None:
    # T_0 = 2, T_mult = 2: periods [0, 2), [2, 6), [6, 14), [14, 30)
    values = [S.cosine_annealing_warm_restarts_lr(t, 1.0, 2, 2) for t in range(31)]
    assert [t for t, v in enumerate(values) if v == 1.0] == [0, 2, 6, 14, 30]
    assert values[4] == pytest.approx(0.5, rel=REL)  # half way through [2, 6)
    assert values[10] == pytest.approx(0.5, rel=REL)  # half way through [6, 14)
    # with T_mult = 10 the exact integer search finds the restart at 111 that torch's logarithm misses
    assert S.cosine_annealing_warm_restarts_lr(111, 1.0, 1, 10) == 1.0


def test_one_cycle_values() -> None:
    lr = [S.one_cycle_lr(t, 1.0, 100, div_factor=25.0, final_div_factor=1e4) for t in range(101)]
    assert lr[0] == pytest.approx(0.04, rel=REL)
    assert max(lr) == lr[29] == 1.0  # the peak ends the first 30 % (steps 0 ... 29)
    assert lr[99] == pytest.approx(0.04 / 1e4, rel=REL)
    momentum = [S.one_cycle_momentum(t, 100) for t in range(100)]
    assert momentum[0] == 0.95
    assert momentum[29] == 0.85
    assert momentum[99] == pytest.approx(0.95, rel=REL)
    three = [S.one_cycle(t, 100, 1.0, 3.0, 0.0, pct_start=0.25, anneal_strategy="linear", three_phase=True)
             for t in range(100)]
    assert three[0] == 1.0
    assert three[24] == 3.0
    assert three[48] == pytest.approx(1.0, rel=REL)
    assert three[99] == pytest.approx(0.0, abs=1e-15)
    assert three[12] == pytest.approx(2.0, rel=REL)  # linear: half way up


def test_cyclic_values() -> None:
    tri = [S.cyclic_lr(t, 1.0, 3.0, 4) for t in range(17)]
    assert tri[:9] == [1.0, 1.5, 2.0, 2.5, 3.0, 2.5, 2.0, 1.5, 1.0]
    assert tri[12] == 3.0
    tri2 = [S.cyclic_lr(t, 1.0, 3.0, 4, mode="triangular2") for t in range(25)]
    assert (tri2[4], tri2[12], tri2[20]) == (3.0, 2.0, 1.5)  # the amplitude halves every cycle
    assert S.cyclic_lr(4, 1.0, 3.0, 4, mode="exp_range", gamma=0.5) == 1.0 + 2.0 * 0.5**4
    assert S.cyclic_lr(2, 1.0, 3.0, 2, 6) == 3.0
    assert S.cyclic_lr(5, 1.0, 3.0, 2, 6) == 2.0  # up 2, down 6
    assert S.cyclic_lr(4, 1.0, 3.0, 4, scale_fn=lambda x: x / 10, scale_mode="iterations") == 1.0 + 2.0 * 0.4
    assert [S.cyclic_momentum(t, 0.8, 0.9, 4) for t in (0, 2, 4)] == pytest.approx([0.9, 0.85, 0.8], rel=REL)


def test_inverse_time_values() -> None:
    assert S.inverse_time_lr(0, 1.0, 0.5, 10) == 1.0
    assert S.inverse_time_lr(20, 1.0, 0.5, 10) == 0.5
    assert S.inverse_time_lr(5, 1.0, 1.0, 10) == pytest.approx(1 / 1.5, rel=REL)
    assert S.inverse_time_lr(19, 1.0, 1.0, 10, staircase=True) == 0.5


def test_warmup_cosine_values() -> None:
    values = [S.warmup_cosine_lr(t, 1.0, 10, 110, min_lr=0.1) for t in range(130)]
    assert values[0] == 0.0
    assert values[5] == 0.5
    assert values[10] == 1.0
    assert values[60] == pytest.approx(0.55, rel=REL)  # half way down the cosine
    assert values[110:] == [0.1] * 20
    assert S.warmup_cosine_lr(0, 1.0, 10, 110, warmup_start_factor=0.2) == 0.2
    assert S.warmup_cosine_lr(0, 1.0, 0, 10) == 1.0  # no warmup: the cosine from the start


def test_sequential_restarts_each_schedule_at_its_milestone() -> None:
    fns = [lambda s: 100.0 + s, lambda s: 200.0 + s, lambda s: 300.0 + s]
    assert [S.sequential(t, fns, [2, 5]) for t in range(7)] == [100, 101, 200, 201, 202, 300, 301]


def test_numpy_integers_are_steps() -> None:
    assert S.step_lr(np.int64(7), 1.0, np.int32(7), 0.5) == 0.5


# ---- bad arguments ---------------------------------------------------------------------------
BAD = [
    (lambda: S.step_lr(-1, 1.0, 3), ValueError, "step must be >= 0"),
    (lambda: S.step_lr(1.5, 1.0, 3), TypeError, "step must be an integer"),
    (lambda: S.step_lr(1, 1.0, 0), ValueError, "step_size"),
    (lambda: S.exponential_lr(1, 1.0, -0.5), ValueError, "gamma"),
    (lambda: S.multistep_lr(1, 1.0, [5, 2]), ValueError, "milestones must be in increasing order"),
    (lambda: S.constant_lr(1, 1.0, factor=0.0), ValueError, "factor"),
    (lambda: S.linear_lr(1, 1.0, total_iters=0), ValueError, "total_iters"),
    (lambda: S.polynomial_lr(1, 1.0, 5, power=-2.0), ValueError, "power"),
    (lambda: S.cosine_annealing_lr(1, 1.0, T_max=0), ValueError, "T_max"),
    (lambda: S.cosine_annealing_lr(-0.5, 1.0, 10), ValueError, "step"),
    (lambda: S.cosine_annealing_warm_restarts_lr(1, 1.0, 0), ValueError, "T_0"),
    (lambda: S.cosine_annealing_warm_restarts_lr(1, 1.0, 3, T_mult=0), ValueError, "T_mult"),
    (lambda: S.inverse_time_lr(1, 1.0, 0.5, 0), ValueError, "decay_steps"),
    (lambda: S.inverse_time_lr(1, 1.0, 0.5, 1, staircase=1), TypeError, "staircase"),
    (lambda: S.warmup_cosine_lr(1, 1.0, 10, 5), ValueError, "total_steps must be > warmup_steps"),
    (lambda: S.warmup_cosine_lr(1, 1.0, 1, 5, min_lr=-1.0), ValueError, "min_lr"),
    (lambda: S.one_cycle_lr(101, 1.0, 100), ValueError, "past total_steps=100"),
    (lambda: S.one_cycle_lr(1, 1.0, 100, pct_start=-0.1), ValueError, "pct_start"),
    (lambda: S.one_cycle_lr(1, 1.0, 10, pct_start=0.1), ValueError, "zero steps"),
    (lambda: S.one_cycle_lr(1, 1.0, 100, anneal_strategy="cosine"), ValueError, "anneal_strategy"),
    (lambda: S.one_cycle_lr(1, 1.0, 100, div_factor=0.0), ValueError, "div_factor"),
    (lambda: S.cyclic_lr(1, 0.1, 1.0, step_size_up=0), ValueError, "step_size_up"),
    (lambda: S.cyclic_lr(1, 0.1, 1.0, mode="sine"), ValueError, "mode"),
    (lambda: S.cyclic_lr(1, 0.1, 1.0, mode=3), TypeError, "mode"),
    (lambda: S.cyclic_lr(1, 0.1, 1.0, scale_fn="x"), TypeError, "scale_fn"),
    (lambda: S.sequential(1, [], []), ValueError, "schedules is empty"),
    (lambda: S.sequential(1, [abs, abs], [2, 3]), ValueError, "one entry fewer"),
    (lambda: S.sequential(1, [abs, abs], [0]), ValueError, "milestones"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_naming_the_argument(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
