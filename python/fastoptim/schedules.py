r"""Learning-rate schedules as pure functions of the step, in closed form.

For people who set ``group["lr"]`` themselves::

    >>> from fastoptim import schedules
    >>> for t in range(total):
    ...     opt.param_groups[0]["lr"] = schedules.warmup_cosine_lr(t, 1e-3, 100, total)
    ...     opt.step(grads(t))

Each function returns the value at step ``t`` (``t = 0`` is the value before the first update)
from the base value ``η₀`` and the schedule's arguments, with the defaults and the floating-point
expression of :mod:`fastoptim.lr_scheduler`, which uses these functions wherever the closed form is
the schedule's definition. The step-by-step (chainable) schedulers that follow torch — ``StepLR``,
``MultiStepLR``, ``ConstantLR``, ``LinearLR``, ``ExponentialLR``, ``PolynomialLR`` and
``CosineAnnealingLR`` — update the current value recursively, as torch does, and agree with these
functions up to rounding (about 1e-15 relative per step). The functions work for any numeric
hyper-parameter, not only the learning rate: ``base_lr`` is just the schedule's base value.

``LambdaLR`` needs no function (``η₀ · λ(t)``); ``MultiplicativeLR`` and ``ReduceLROnPlateau``
have no closed form. :func:`sequential` strings schedules together like ``SequentialLR``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from ._validation import check_bool, check_int, check_real

__all__ = [
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts_lr",
    "cyclic_lr",
    "cyclic_momentum",
    "exponential_lr",
    "inverse_time_lr",
    "linear_lr",
    "multistep_lr",
    "one_cycle",
    "one_cycle_lr",
    "one_cycle_momentum",
    "polynomial_lr",
    "sequential",
    "step_lr",
    "warmup_cosine_lr",
]

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
ANNEAL_STRATEGIES = ("cos", "linear")


# ---- argument checks shared with lr_scheduler ------------------------------------------------
def _check_step(step: Any) -> int:
    return check_int("step", step, low=0)


def _check_real_step(step: Any) -> float:
    return check_real("step", step, low=0.0)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_milestones(name: str, milestones: Any, *, strict: bool, low: int) -> list[int]:
    """Integers >= `low`, increasing (strictly, or allowing repeats)."""
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(f"{name} must be a list of integers, got {type(milestones).__name__}") from None
    values = [check_int(f"{name}[{i}]", m, low=low) for i, m in enumerate(milestones)]
    for i in range(1, len(values)):
        if values[i] < values[i - 1] or (strict and values[i] == values[i - 1]):
            order = "strictly increasing" if strict else "in increasing order"
            raise ValueError(f"{name} must be {order}, got {values}")
    return values


def check_cyclic_sizes(step_size_up: Any, step_size_down: Any) -> tuple[float, float]:
    up = check_real("step_size_up", step_size_up, low=0.0, low_open=True)
    down = up if step_size_down is None else check_real("step_size_down", step_size_down, low=0.0)
    return up, down


def one_cycle_phases(total_steps: Any, pct_start: Any, three_phase: Any) -> list[tuple[float, int, int]]:
    """The phases of the 1cycle policy as (last step, from, to), `from`/`to` indexing
    (start, peak, end); torch's float arithmetic. Refuses phases of zero length (torch divides
    by zero there)."""
    total = check_int("total_steps", total_steps, low=1)
    pct = check_real("pct_start", pct_start, low=0.0, high=1.0)
    if check_bool("three_phase", three_phase):
        phases = [(float(pct * total) - 1, 0, 1), (float(2 * pct * total) - 2, 1, 0), (total - 1, 0, 2)]
    else:
        phases = [(float(pct * total) - 1, 0, 1), (total - 1, 1, 2)]
    start = 0.0
    for end, _, _ in phases:
        if end == start:
            raise ValueError(f"pct_start={pct_start} with total_steps={total_steps} gives a phase of zero steps "
                             "(pct_start * total_steps must not be 1); change either")
        start = end
    return phases


# ---- piecewise constant ----------------------------------------------------------------------
def step_lr(step: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    r"""``StepLR``: :math:`\eta_t = \eta_0\,\gamma^{\lfloor t / s \rfloor}`."""
    step = _check_step(step)
    step_size = check_int("step_size", step_size, low=1)
    return base_lr * check_real("gamma", gamma, low=0.0) ** (step // step_size)


def multistep_lr(step: int, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    r"""``MultiStepLR``: :math:`\eta_t = \eta_0\,\gamma^{\#\{m_i \le t\}}` (a milestone given twice counts twice)."""
    step = _check_step(step)
    ordered = check_milestones("milestones", milestones, strict=False, low=0)
    return base_lr * check_real("gamma", gamma, low=0.0) ** bisect_right(ordered, step)


def constant_lr(step: int, base_lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> float:
    r"""``ConstantLR``: :math:`\eta_t = \eta_0 \cdot f` for :math:`t < T`, then :math:`\eta_0`."""
    step = _check_step(step)
    factor = check_real("factor", factor, low=0.0, high=1.0, low_open=True)
    total_iters = check_int("total_iters", total_iters, low=1)
    return base_lr * (factor + (step >= total_iters) * (1 - factor))


def linear_lr(step: int, base_lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
              total_iters: int = 5) -> float:
    r"""``LinearLR`` (linear warmup or decay):
    :math:`\eta_t = \eta_0\,\bigl(f_0 + (f_1 - f_0)\,\min(t, T)/T\bigr)`."""
    step = _check_step(step)
    start = check_real("start_factor", start_factor, low=0.0, high=1.0, low_open=True)
    end = check_real("end_factor", end_factor, low=0.0, high=1.0)
    total_iters = check_int("total_iters", total_iters, low=1)
    return base_lr * (start + (end - start) * min(total_iters, step) / total_iters)


# ---- smooth decays ---------------------------------------------------------------------------
def exponential_lr(step: int, base_lr: float, gamma: float) -> float:
    r"""``ExponentialLR``: :math:`\eta_t = \eta_0\,\gamma^t`."""
    return base_lr * check_real("gamma", gamma, low=0.0) ** _check_step(step)


def polynomial_lr(step: int, base_lr: float, total_iters: int = 5, power: float = 1.0) -> float:
    r"""``PolynomialLR``: :math:`\eta_t = \eta_0\,(1 - \min(t, T)/T)^p`."""
    step = _check_step(step)
    total_iters = check_int("total_iters", total_iters, low=1)
    power = check_real("power", power, low=0.0)
    decay: float = (1.0 - min(total_iters, step) / total_iters) ** power
    return base_lr * decay


def cosine_annealing_lr(step: float, base_lr: float, T_max: int, eta_min: float = 0.0) -> float:
    r"""``CosineAnnealingLR`` (SGDR without restarts):
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))`.

    Past ``T_max`` the cosine goes on (back up towards ``η₀``), as torch's does. ``step`` may be
    fractional.
    """
    step = _check_real_step(step)
    T_max = check_int("T_max", T_max, low=1)
    eta_min = check_real("eta_min", eta_min, low=0.0)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / T_max)) / 2


def cosine_annealing_warm_restarts_lr(step: int, base_lr: float, T_0: int, T_mult: int = 1,
                                      eta_min: float = 0.0) -> float:
    r"""``CosineAnnealingWarmRestarts`` (SGDR):
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi T_{cur} / T_i))`,
    where the i-th period lasts :math:`T_i = T_0\,T_{mult}^i` steps and :math:`T_{cur}` counts
    the steps since the last restart (found exactly, in integers)."""
    step = _check_step(step)
    T_i = check_int("T_0", T_0, low=1)
    T_mult = check_int("T_mult", T_mult, low=1)
    T_cur = step % T_i if T_mult == 1 else step
    while T_cur >= T_i:
        T_cur -= T_i
        T_i *= T_mult
    return cosine_annealing_lr(T_cur, base_lr, T_i, eta_min)


def inverse_time_lr(step: int, base_lr: float, decay_rate: float, decay_steps: float,
                    staircase: bool = False) -> float:
    r"""Inverse-time (reciprocal) decay, as Keras' ``InverseTimeDecay``:
    :math:`\eta_t = \eta_0 / (1 + r\,t/s)`, with :math:`\lfloor t/s \rfloor` when ``staircase``."""
    step = _check_step(step)
    rate = check_real("decay_rate", decay_rate, low=0.0)
    progress = step / check_real("decay_steps", decay_steps, low=0.0, low_open=True)
    if check_bool("staircase", staircase):
        progress = math.floor(progress)
    return base_lr / (1 + rate * progress)


def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                     min_lr: float = 0.0, warmup_start_factor: float = 0.0) -> float:
    r"""Linear warmup, then cosine decay to ``min_lr``:

    .. math::
        \eta_t = \begin{cases}
            \eta_0\,\bigl(f_0 + (1 - f_0)\,t / W\bigr) & t < W \\
            \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\bigl(1 + \cos(\pi\,\tfrac{t - W}{T - W})\bigr) & W \le t \le T \\
            \eta_{min} & t > T
        \end{cases}

    with W = ``warmup_steps``, T = ``total_steps`` and f₀ = ``warmup_start_factor`` (default 0:
    the first step has lr 0, as in Hugging Face's ``get_cosine_schedule_with_warmup``).
    """
    step = _check_step(step)
    warmup = check_int("warmup_steps", warmup_steps, low=0)
    total = check_int("total_steps", total_steps, low=1)
    if total <= warmup:
        raise ValueError(f"total_steps must be > warmup_steps, got total_steps={total} and warmup_steps={warmup}")
    min_lr = check_real("min_lr", min_lr, low=0.0)
    start = check_real("warmup_start_factor", warmup_start_factor, low=0.0, high=1.0)
    if step < warmup:
        return base_lr * (start + (1 - start) * step / warmup)
    if step <= total:
        return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2
    return min_lr


# ---- cycles ----------------------------------------------------------------------------------
def _anneal(strategy: str, start: float, end: float, pct: float) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle(step: int, total_steps: int, start: float, peak: float, end: float, pct_start: float = 0.3,
              anneal_strategy: str = "cos", three_phase: bool = False) -> float:
    r"""The 1cycle shape (Smith & Topin, 2017) through three values: ``start`` → ``peak`` over
    the first ``pct_start`` of the steps, then → ``end``; with ``three_phase``, ``start`` →
    ``peak`` → ``start`` (symmetric) → ``end``. Each leg anneals by
    :math:`b + \tfrac12(a - b)(1 + \cos \pi p)` (``"cos"``) or :math:`a + (b - a)\,p`
    (``"linear"``), p going from 0 to 1 along the leg.

    Step ``total_steps`` itself is allowed (it extrapolates a little past ``end``), as in torch.
    """
    step = _check_step(step)
    phases = one_cycle_phases(total_steps, pct_start, three_phase)
    if step > total_steps:
        raise ValueError(f"step {step} is past total_steps={total_steps}")
    strategy = check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
    points = (start, peak, end)
    start_step = 0.0
    for i, (end_step, a, b) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            return _anneal(strategy, points[a], points[b], (step - start_step) / (end_step - start_step))
        start_step = end_step
    raise AssertionError("unreachable")


def one_cycle_lr(step: int, max_lr: float, total_steps: int, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False) -> float:
    """``OneCycleLR``'s learning rate: :func:`one_cycle` from ``max_lr / div_factor`` up to
    ``max_lr`` and down to ``max_lr / div_factor / final_div_factor``."""
    div = check_real("div_factor", div_factor, low=0.0, low_open=True)
    final_div = check_real("final_div_factor", final_div_factor, low=0.0, low_open=True)
    initial = max_lr / div
    return one_cycle(step, total_steps, initial, max_lr, initial / final_div, pct_start, anneal_strategy, three_phase)


def one_cycle_momentum(step: int, total_steps: int, base_momentum: float = 0.85, max_momentum: float = 0.95,
                       pct_start: float = 0.3, anneal_strategy: str = "cos", three_phase: bool = False) -> float:
    """``OneCycleLR``'s momentum (or β₁), cycled inversely to the learning rate:
    ``max_momentum`` → ``base_momentum`` → ``max_momentum``."""
    return one_cycle(step, total_steps, max_momentum, base_momentum, max_momentum, pct_start, anneal_strategy,
                     three_phase)


def _cyclic_position(step: int, step_size_up: Any, step_size_down: Any, mode: Any, gamma: Any,
                     scale_fn: Callable[[float], float] | None, scale_mode: Any) -> tuple[float, float]:
    """(how far up the triangle, 0..1; the amplitude's scale) at `step`, as torch computes them."""
    step = _check_step(step)
    up, down = check_cyclic_sizes(step_size_up, step_size_down)
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    mode = check_choice("mode", mode, CYCLIC_MODES)
    gamma = check_real("gamma", gamma, low=0.0)
    if scale_fn is not None:
        if not callable(scale_fn):
            raise TypeError(f"scale_fn must be callable, got {type(scale_fn).__name__}")
        by_cycle = check_choice("scale_mode", scale_mode, ("cycle", "iterations")) == "cycle"
        return height, scale_fn(cycle if by_cycle else step)
    if mode == "triangular":
        return height, 1.0
    if mode == "triangular2":
        return height, 1 / (2.0 ** (cycle - 1))
    return height, gamma**step


def cyclic_lr(step: int, base_lr: float, max_lr: float, step_size_up: float = 2000,
              step_size_down: float | None = None, mode: str = "triangular", gamma: float = 1.0,
              scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle") -> float:
    r"""``CyclicLR`` (Smith, 2017): a triangle between ``base_lr`` and ``max_lr``, rising for
    ``step_size_up`` steps and falling for ``step_size_down`` (default: the same),

    .. math:: \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\,h_t\,s

    with :math:`h_t \in [0, 1]` the height in the triangle and the scale s: 1
    (``"triangular"``), :math:`2^{1-c}` in cycle c = 1, 2, … (``"triangular2"``),
    :math:`\gamma^t` (``"exp_range"``), or ``scale_fn`` of the cycle or of t (``scale_mode``),
    which then overrides ``mode``.
    """
    height, scale = _cyclic_position(step, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    return base_lr + (max_lr - base_lr) * height * scale


def cyclic_momentum(step: int, base_momentum: float, max_momentum: float, step_size_up: float = 2000,
                    step_size_down: float | None = None, mode: str = "triangular", gamma: float = 1.0,
                    scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle") -> float:
    r"""``CyclicLR``'s momentum, cycled inversely:
    :math:`m_t = m_{max} - (m_{max} - m_{base})\,h_t\,s` (see :func:`cyclic_lr`)."""
    height, scale = _cyclic_position(step, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    return max_momentum - (max_momentum - base_momentum) * height * scale


# ---- composition -----------------------------------------------------------------------------
def sequential(step: int, schedules: Sequence[Callable[[int], float]], milestones: Sequence[int]) -> float:
    r"""``SequentialLR`` in closed form: schedule i runs from milestone i-1 (0 for the first),
    restarted at its own step 0: :math:`\eta_t = f_i(t - m_{i-1})` for
    :math:`m_{i-1} \le t < m_i`.

        >>> warmup_then_cosine = lambda t: sequential(t, [
        ...     lambda s: linear_lr(s, 0.1, 0.01, 1.0, 10),
        ...     lambda s: cosine_annealing_lr(s, 0.1, 90)], [10])
    """
    step = _check_step(step)
    if len(schedules) < 1:
        raise ValueError("schedules is empty")
    marks = check_milestones("milestones", milestones, strict=True, low=1)
    if len(marks) != len(schedules) - 1:
        raise ValueError(f"milestones must have one entry fewer than schedules: got {len(marks)} milestones "
                         f"for {len(schedules)} schedules")
    index = bisect_right(marks, step)
    return schedules[index](step - (marks[index - 1] if index else 0))
