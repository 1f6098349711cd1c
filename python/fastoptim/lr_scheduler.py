r"""Learning-rate schedulers with ``torch.optim.lr_scheduler``'s API and values, step for step.

A scheduler binds to any object with a torch-style ``param_groups`` list of dicts — every
fastoptim optimizer, wrappers that expose their inner optimizer's groups, torch optimizers — and
writes ``group["lr"]`` (or another hyper-parameter, see ``param_name``) once per :meth:`step`::

    >>> opt = fo.SGD([w], lr=0.1, momentum=0.9)
    >>> sched = WarmupCosineLR(opt, warmup_steps=100, total_steps=10_000)
    >>> for batch in data:
    ...     opt.step(grads(batch))
    ...     sched.step()

As in torch, the constructor stores ``group["initial_lr"]`` and takes the first step (the value
for step 0); ``last_epoch`` counts the steps taken. The step-by-step classes compute each value
from the current one exactly as torch does (its "chainable" form, so that schedulers can be
stacked); the others evaluate their closed form from :mod:`fastoptim.schedules`.

**Other hyper-parameters.** Every scheduler takes a keyword-only ``param_name`` (default
``"lr"``): ``StepLR(opt, 10, param_name="weight_decay")`` decays the weight decay, keeping its
base value in ``group["initial_weight_decay"]``. An element of a tuple is named with an index:
``param_name="betas[1]"`` schedules β₂ and writes back a new ``betas`` tuple. ``OneCycleLR`` and
``CyclicLR`` cycle the momentum too, as torch does: ``group["momentum"]``, or ``betas[0]`` for
optimizers with ``betas`` (Adam, AdamW).

**Checkpoints.** ``state_dict()`` is a plain, picklable dict (user functions are kept only as
the ``__dict__`` of callable objects, like torch; plain functions and lambdas are skipped and
must be passed again to the constructor). ``load_state_dict()`` checks the dict fits this
scheduler, then also writes the last values back into the optimizer's groups, so a run resumes
exactly whether the optimizer's state was loaded before or after the scheduler was built
(torch's ``SequentialLR`` loses the learning rate when the optimizer is loaded first).
"""

from __future__ import annotations

import copy
import math
import numbers
import types
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, SupportsFloat

from . import schedules
from ._validation import (
    Groups,
    check_bool,
    check_callables_per_group,
    check_int,
    check_param_groups,
    check_param_name,
    check_per_group,
    check_real,
    split_param_name,
)

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "InverseTimeLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "SupportsParamGroups",
    "WarmupCosineLR",
]


class SupportsParamGroups(Protocol):
    """What a scheduler needs of an optimizer: torch-style ``param_groups``."""

    @property
    def param_groups(self) -> Sequence[MutableMapping[str, Any]]: ...


# ---- hyper-parameters by name: "lr", "weight_decay", "betas[0]" -----------------------------
def _read(group: Mapping[str, Any], name: str) -> Any:
    key, index = split_param_name(name)
    return group[key] if index is None else group[key][index]


def _write(group: MutableMapping[str, Any], name: str, value: Any) -> None:
    key, index = split_param_name(name)
    if index is None:
        group[key] = value
    else:
        old = tuple(group[key])
        group[key] = (*old[:index], value, *old[index + 1:])


def _callable_state(fn: Any) -> dict[str, Any] | None:
    """What a checkpoint keeps of a user function: the ``__dict__`` of a callable object."""
    plain = (types.FunctionType, types.MethodType, types.BuiltinFunctionType)
    if fn is None or isinstance(fn, plain) or not hasattr(fn, "__dict__"):
        return None
    state: dict[str, Any] = copy.deepcopy(vars(fn))
    return state


def _same_optimizer(a: Any, b: Any) -> bool:
    return a is b or getattr(a, "param_groups", None) is getattr(b, "param_groups", a)


def _momentum_name(groups: Groups, param_name: str) -> str:
    """The momentum that OneCycleLR and CyclicLR cycle: betas[0] if the groups have betas, else momentum."""
    if all("betas" in g for g in groups):
        name = "betas[0]"
    elif all("momentum" in g for g in groups):
        name = "momentum"
    else:
        raise ValueError("cycle_momentum=True needs param groups with 'momentum' or 'betas'; pass cycle_momentum=False")
    if name == param_name:
        raise ValueError(f"param_name={param_name!r} is the momentum that cycle_momentum=True cycles; "
                         "pass cycle_momentum=False")
    return check_param_name(groups, name)


@contextmanager
def _restored_on_error(groups: Groups) -> Iterator[None]:
    """Every group's entries put back as they were if the block raises: a scheduler that fails
    to start leaves the optimizer untouched."""
    saved = [dict(group) for group in groups]
    try:
        yield
    except BaseException:
        for group, before in zip(groups, saved):
            for key in [k for k in group if k not in before]:
                del group[key]
            for key, value in before.items():
                if key not in group or group[key] is not value:
                    group[key] = value
        raise


# ---- the base class --------------------------------------------------------------------------
class LRScheduler:
    """Base class: owns the bound optimizer, ``base_lrs``, ``last_epoch`` and the state dict.

    Subclasses implement :meth:`get_lr` (the values for step ``last_epoch``, usually from the
    current ones, as torch's chainable form) and may implement ``_closed_form_lr`` (from
    ``base_lrs``), which ``SequentialLR`` uses when it hands over to this scheduler.

    Args:
        optimizer: anything with a torch-style ``param_groups`` list of dicts.
        last_epoch: the index of the last step; -1 (default) starts the schedule. A value ≥ 0
            (torch's way of resuming) needs ``group["initial_lr"]`` already in the groups.
        param_name: the hyper-parameter to schedule (keyword only): ``"lr"`` (default), any
            other numeric group entry such as ``"weight_decay"``, or a tuple element such as
            ``"betas[1]"``. Its base value is kept in ``group["initial_<param_name>"]``.
    """

    _callables: ClassVar[tuple[str, ...]] = ()  # attributes holding user functions

    def __init__(self, optimizer: SupportsParamGroups, last_epoch: int = -1, *, param_name: str = "lr",
                 _seeds: Sequence[tuple[MutableMapping[str, Any], str, Any]] = ()) -> None:
        # `_seeds`: (group, name, value) a subclass writes into the groups once it has validated
        # everything, here, where a failing first step puts every group back as it was.
        groups = check_param_groups(optimizer)
        param_name = check_param_name(groups, param_name)
        last_epoch = check_int("last_epoch", last_epoch, low=-1)
        with _restored_on_error(groups):
            for group, name, value in _seeds:
                _write(group, name, value)
            self.optimizer = optimizer
            self.param_name = param_name
            key = self._initial_key
            if last_epoch == -1:
                for group in groups:
                    group.setdefault(key, _read(group, self.param_name))
            else:
                for i, group in enumerate(groups):
                    if key not in group:
                        raise ValueError(f"last_epoch={last_epoch} resumes a schedule, but param_groups[{i}] has "
                                         f"no {key!r}: load the optimizer's state first, or start with last_epoch=-1")
            self.base_lrs: list[float] = self._base_values()
            self.last_epoch = last_epoch
            self._step_count = 0
            self._is_initial = False
            self._last_lr: list[float] = []
            self._initial_step()

    @property
    def _initial_key(self) -> str:
        return f"initial_{self.param_name}"

    def _base_values(self) -> list[float]:
        return [group[self._initial_key] for group in self.optimizer.param_groups]

    def _initial_step(self) -> None:
        """The constructor's step, which sets the value for step 0."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    # ---- stepping -------------------------------------------------------------------------
    def get_lr(self) -> list[float]:
        """The values for step ``last_epoch``, one per group (called by :meth:`step`; read the
        current values with :meth:`get_last_lr`)."""
        raise NotImplementedError

    def _closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def step(self) -> None:
        """Advance one step and write the new values into the optimizer's groups. Call it after
        ``optimizer.step(...)``."""
        self._step_count += 1
        self._advance(None)

    def _advance(self, epoch: int | None) -> None:
        """One step; or, given `epoch`, jump there by the closed form (torch's ``_update_lr``)."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise ValueError(f"the optimizer has {len(groups)} param groups; {type(self).__name__} was built for "
                             f"{len(self.base_lrs)} (add param groups before creating the scheduler)")
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form_lr()
        for group, value in zip(groups, values):
            _write(group, self.param_name, value)
        self._last_lr = self._current()

    def _current(self) -> list[float]:
        return [_read(group, self.param_name) for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The values this scheduler set last, one per group."""
        return list(self._last_lr)

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer, as a plain picklable dict (copies). Children of
        ``SequentialLR``/``ChainedScheduler`` are stored as their own state dicts; user functions
        only as the ``__dict__`` of callable objects (None for plain functions and lambdas)."""
        state: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "optimizer":
                continue
            if key == "_schedulers":
                state[key] = [child.state_dict() for child in value]
            elif key in self._callables:
                state[key] = [_callable_state(f) for f in value] if isinstance(value, list) else _callable_state(value)
            else:
                state[key] = copy.deepcopy(value)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a scheduler built the same way, then write its last
        values back into the optimizer's groups (so the next optimizer step uses them). Checked
        first: on a mismatch nothing changes."""
        self._check_state(state_dict)
        for key, value in state_dict.items():
            if key == "_schedulers":
                for child, child_state in zip(self.__dict__[key], value):
                    child.load_state_dict(child_state)
            elif key in self._callables:
                fns = self.__dict__[key]
                pairs = zip(fns, value) if isinstance(fns, list) else [(fns, value)]
                for fn, saved in pairs:
                    if saved is not None and fn is not None:
                        vars(fn).update(copy.deepcopy(saved))
            else:
                self.__dict__[key] = copy.deepcopy(value)
        self._write_back()

    def _check_state(self, state_dict: Any) -> None:
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict from {name}.state_dict(), got {type(state_dict).__name__}")
        expected = self.__dict__.keys() - {"optimizer"}
        missing, extra = sorted(expected - state_dict.keys()), sorted(state_dict.keys() - expected)
        if missing or extra:
            raise ValueError(f"state_dict does not fit this {name}" + (f"; it lacks {missing}" if missing else "")
                             + (f"; it has unexpected {extra}" if extra else "") + " (another scheduler's state?)")
        if state_dict["param_name"] != self.param_name:
            raise ValueError(f"state_dict schedules {state_dict['param_name']!r}; this {name} schedules "
                             f"{self.param_name!r}")
        groups = len(self.optimizer.param_groups)
        if len(state_dict["_last_lr"]) != groups:
            raise ValueError(f"state_dict has values for {len(state_dict['_last_lr'])} param groups; the optimizer "
                             f"has {groups}")
        for key in self._callables:
            fns, saved = self.__dict__[key], state_dict[key]
            if isinstance(fns, list) and (not isinstance(saved, list) or len(saved) != len(fns)):
                raise ValueError(f"state_dict[{key!r}] must be a list of {len(fns)} entries")
        if "_schedulers" in expected:
            children, saved = self.__dict__["_schedulers"], state_dict["_schedulers"]
            if not isinstance(saved, list) or len(saved) != len(children):
                raise ValueError(f"state_dict['_schedulers'] must hold {len(children)} state dicts")
            for child, child_state in zip(children, saved):
                child._check_state(child_state)

    def _write_back(self) -> None:
        for group, value in zip(self.optimizer.param_groups, self._last_lr):
            _write(group, self.param_name, value)


# ---- functions of the step -------------------------------------------------------------------
class _LambdaScheduler(LRScheduler):
    """Shared by LambdaLR and MultiplicativeLR: a user function of the step, one per group."""

    _callables = ("lr_lambdas",)

    def __init__(self, optimizer: SupportsParamGroups,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]], last_epoch: int = -1, *,
                 param_name: str = "lr") -> None:
        self.lr_lambdas = check_callables_per_group("lr_lambda", lr_lambda, check_param_groups(optimizer))
        super().__init__(optimizer, last_epoch, param_name=param_name)


class LambdaLR(_LambdaScheduler):
    r"""``torch.optim.lr_scheduler.LambdaLR``: :math:`\eta_t = \eta_0\,\lambda(t)`.

    Args:
        lr_lambda: a function of the step giving the factor, or a list with one per group.
    """

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaScheduler):
    r"""``torch.optim.lr_scheduler.MultiplicativeLR``: :math:`\eta_t = \eta_{t-1}\,\lambda(t)` (t ≥ 1).

    Args:
        lr_lambda: a function of the step giving the factor, or a list with one per group.
    """

    def get_lr(self) -> list[float]:
        current = self._current()
        if self._is_initial:
            return current
        return [value * fn(self.last_epoch) for fn, value in zip(self.lr_lambdas, current)]


# ---- piecewise constant ----------------------------------------------------------------------
class StepLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.StepLR``: :math:`\eta_t = \eta_0\,\gamma^{\lfloor t/s \rfloor}`,
    applied as a multiplication by γ every ``step_size`` steps.

    Args:
        step_size: s, the steps between decays (≥ 1).
        gamma: γ ≥ 0 (default 0.1).
    """

    def __init__(self, optimizer: SupportsParamGroups, step_size: int, gamma: float = 0.1, last_epoch: int = -1, *,
                 param_name: str = "lr") -> None:
        self.step_size = check_int("step_size", step_size, low=1)
        self.gamma = check_real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return current
        return [value * self.gamma for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.step_lr(self.last_epoch, base, self.step_size, self.gamma) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.MultiStepLR``: :math:`\eta_t = \eta_0\,\gamma^{\#\{m_i \le t\}}`,
    applied as a multiplication by γ at each milestone (by γⁿ at one given n times).

    Args:
        milestones: steps ≥ 0 in increasing order (repeats allowed).
        gamma: γ ≥ 0 (default 0.1).
    """

    def __init__(self, optimizer: SupportsParamGroups, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1, *, param_name: str = "lr") -> None:
        self.milestones = schedules.check_milestones("milestones", milestones, strict=False, low=0)
        self.gamma = check_real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        count = self.milestones.count(self.last_epoch)
        if not count:
            return current
        return [value * self.gamma**count for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.multistep_lr(self.last_epoch, base, self.milestones, self.gamma) for base in self.base_lrs]


class ConstantLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.ConstantLR``: :math:`\eta_t = f\,\eta_0` for t < T, then
    :math:`\eta_0` (multiplies by f at step 0 and by 1/f at step T).

    Args:
        factor: f in (0, 1] (default 1/3).
        total_iters: T ≥ 1 (default 5).
    """

    def __init__(self, optimizer: SupportsParamGroups, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1, *, param_name: str = "lr") -> None:
        self.factor = check_real("factor", factor, low=0.0, high=1.0, low_open=True)
        self.total_iters = check_int("total_iters", total_iters, low=1)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        if self.last_epoch == 0:
            return [value * self.factor for value in current]
        if self.last_epoch != self.total_iters:
            return current
        return [value * (1.0 / self.factor) for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.constant_lr(self.last_epoch, base, self.factor, self.total_iters) for base in self.base_lrs]


class LinearLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.LinearLR`` (linear warmup):
    :math:`\eta_t = \eta_0\,(f_0 + (f_1 - f_0)\min(t, T)/T)`, applied step by step as torch does:
    :math:`\eta_t = \eta_{t-1}\,\bigl(1 + \frac{f_1 - f_0}{T f_0 + (t-1)(f_1 - f_0)}\bigr)`.

    Args:
        start_factor: f₀ in (0, 1] (default 1/3).
        end_factor: f₁ in [0, 1] (default 1).
        total_iters: T ≥ 1 (default 5).
    """

    def __init__(self, optimizer: SupportsParamGroups, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1, *, param_name: str = "lr") -> None:
        self.start_factor = check_real("start_factor", start_factor, low=0.0, high=1.0, low_open=True)
        self.end_factor = check_real("end_factor", end_factor, low=0.0, high=1.0)
        self.total_iters = check_int("total_iters", total_iters, low=1)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        if self.last_epoch == 0:
            return [value * self.start_factor for value in current]
        if self._is_initial or self.last_epoch > self.total_iters:
            return current
        delta = self.end_factor - self.start_factor
        ratio = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta)
        return [value * ratio for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.linear_lr(self.last_epoch, base, self.start_factor, self.end_factor, self.total_iters)
                for base in self.base_lrs]


# ---- smooth decays ---------------------------------------------------------------------------
class ExponentialLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.ExponentialLR``: :math:`\eta_t = \eta_0\,\gamma^t`, applied as
    :math:`\eta_t = \gamma\,\eta_{t-1}`.

    Args:
        gamma: γ ≥ 0.
    """

    def __init__(self, optimizer: SupportsParamGroups, gamma: float, last_epoch: int = -1, *,
                 param_name: str = "lr") -> None:
        self.gamma = check_real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        if self._is_initial:
            return current
        return [value * self.gamma for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.exponential_lr(self.last_epoch, base, self.gamma) for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.PolynomialLR``: :math:`\eta_t = \eta_0\,(1 - \min(t, T)/T)^p`,
    applied as :math:`\eta_t = \eta_{t-1}\,\bigl(\frac{1 - t/T}{1 - (t-1)/T}\bigr)^p` up to T.

    Args:
        total_iters: T ≥ 1 (default 5).
        power: p ≥ 0 (default 1).
    """

    def __init__(self, optimizer: SupportsParamGroups, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1,
                 *, param_name: str = "lr") -> None:
        self.total_iters = check_int("total_iters", total_iters, low=1)
        self.power = check_real("power", power, low=0.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        if self._is_initial or self.last_epoch > self.total_iters:
            return current
        t, total = self.last_epoch, self.total_iters
        decay = ((1.0 - t / total) / (1.0 - (t - 1) / total)) ** self.power
        return [value * decay for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.polynomial_lr(self.last_epoch, base, self.total_iters, self.power) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.CosineAnnealingLR`` (SGDR without restarts):
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))`,
    applied as torch does, recursively:

    .. math::
        \eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})\,
            \frac{1 + \cos(\pi t / T_{max})}{1 + \cos(\pi (t-1) / T_{max})}

    Past ``T_max`` the cosine goes on, back up towards η₀.

    Args:
        T_max: steps of the half period (≥ 1).
        eta_min: η_min ≥ 0 (default 0).
    """

    def __init__(self, optimizer: SupportsParamGroups, T_max: int, eta_min: float = 0.0, last_epoch: int = -1, *,
                 param_name: str = "lr") -> None:
        self.T_max = check_int("T_max", T_max, low=1)
        self.eta_min = check_real("eta_min", eta_min, low=0.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        current = self._current()
        t, period, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return current
        if self._step_count == 1 and t > 0:
            return self._closed_form_lr()
        if (t - 1 - period) % (2 * period) == 0:  # leaving the minimum: the ratio would be 0/0
            return [value + (base - low) * (1 - math.cos(math.pi / period)) / 2
                    for base, value in zip(self.base_lrs, current)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (value - low) + low for value in current]

    def _closed_form_lr(self) -> list[float]:
        return [schedules.cosine_annealing_lr(self.last_epoch, base, self.T_max, self.eta_min)
                for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` (SGDR):
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi T_{cur} / T_i))`,
    restarting at η₀ after :math:`T_i` steps; the period grows: :math:`T_{i+1} = T_{mult} T_i`.

    ``step(epoch)`` also takes a (fractional) epoch, as torch's does, to step within an epoch:
    ``sched.step(epoch + i / iters_per_epoch)``.

    Args:
        T_0: steps of the first period (≥ 1).
        T_mult: growth of the period after each restart (integer ≥ 1, default 1).
        eta_min: η_min ≥ 0 (default 0).
    """

    def __init__(self, optimizer: SupportsParamGroups, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1, *, param_name: str = "lr") -> None:
        self.T_0 = check_int("T_0", T_0, low=1)
        self.T_i = self.T_0
        self.T_mult = check_int("T_mult", T_mult, low=1)
        self.eta_min = check_real("eta_min", eta_min, low=0.0)
        self.T_cur: float = check_int("last_epoch", last_epoch, low=-1)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        return [schedules.cosine_annealing_lr(self.T_cur, base, self.T_i, self.eta_min) for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, or go to `epoch` (≥ 0, may be fractional), as torch does."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Real):
                raise TypeError(f"epoch must be a real number, got {type(epoch).__name__}")
            if not math.isfinite(epoch) or epoch < 0:
                raise ValueError(f"epoch must be finite and >= 0, got {epoch!r}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:  # torch's formula, logarithm included (it can miss a restart by rounding)
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise ValueError(f"the optimizer has {len(groups)} param groups; {type(self).__name__} was built for "
                             f"{len(self.base_lrs)}")
        self.last_epoch = math.floor(epoch)
        for group, value in zip(groups, self.get_lr()):
            _write(group, self.param_name, value)
        self._last_lr = self._current()


class InverseTimeLR(LRScheduler):
    r"""Inverse-time (reciprocal) decay, not in torch (Keras' ``InverseTimeDecay``):
    :math:`\eta_t = \eta_0 / (1 + r\,t/s)`, or :math:`\eta_0 / (1 + r \lfloor t/s \rfloor)` with
    ``staircase``. Closed form (:func:`fastoptim.schedules.inverse_time_lr`).

    Args:
        decay_rate: r ≥ 0.
        decay_steps: s > 0 (default 1).
        staircase: decay in steps of ``decay_steps`` (default False).
    """

    def __init__(self, optimizer: SupportsParamGroups, decay_rate: float, decay_steps: float = 1,
                 staircase: bool = False, last_epoch: int = -1, *, param_name: str = "lr") -> None:
        self.decay_rate = check_real("decay_rate", decay_rate, low=0.0)
        self.decay_steps = check_real("decay_steps", decay_steps, low=0.0, low_open=True)
        self.staircase = check_bool("staircase", staircase)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        return [schedules.inverse_time_lr(self.last_epoch, base, self.decay_rate, self.decay_steps, self.staircase)
                for base in self.base_lrs]


class WarmupCosineLR(LRScheduler):
    r"""Linear warmup, then cosine decay to ``min_lr`` — the usual transformer schedule in one line,
    not in torch. Closed form (:func:`fastoptim.schedules.warmup_cosine_lr`):

    .. math::
        \eta_t = \begin{cases}
            \eta_0\,(f_0 + (1 - f_0)\,t/W) & t < W \\
            \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi\,\tfrac{t - W}{T - W})) & W \le t \le T \\
            \eta_{min} & t > T
        \end{cases}

    Args:
        warmup_steps: W ≥ 0; the peak η₀ (the group's lr) is reached at step W.
        total_steps: T > W; ``min_lr`` is reached at step T and kept after.
        min_lr: η_min ≥ 0 (default 0), or a list with one per group.
        warmup_start_factor: f₀ in [0, 1] (default 0: step 0 has lr 0).
    """

    def __init__(self, optimizer: SupportsParamGroups, warmup_steps: int, total_steps: int,
                 min_lr: float | Sequence[float] = 0.0, warmup_start_factor: float = 0.0, last_epoch: int = -1, *,
                 param_name: str = "lr") -> None:
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
        self.total_steps = check_int("total_steps", total_steps, low=1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps must be > warmup_steps, got total_steps={total_steps} and "
                             f"warmup_steps={warmup_steps}")
        self.min_lrs = check_per_group("min_lr", min_lr, check_param_groups(optimizer), low=0.0)
        self.warmup_start_factor = check_real("warmup_start_factor", warmup_start_factor, low=0.0, high=1.0)
        super().__init__(optimizer, last_epoch, param_name=param_name)

    def get_lr(self) -> list[float]:
        return [schedules.warmup_cosine_lr(self.last_epoch, base, self.warmup_steps, self.total_steps, low,
                                           self.warmup_start_factor)
                for base, low in zip(self.base_lrs, self.min_lrs)]


Seed = tuple[MutableMapping[str, Any], str, Any]  # (group, hyper-parameter name, value)


def _momentum_seeds(groups: Groups, momentum: str, highs: Sequence[float], lows: Sequence[float]) -> list[Seed]:
    """What OneCycleLR and CyclicLR write into each group to cycle its momentum."""
    seeds: list[Seed] = []
    for group, high, low in zip(groups, highs, lows):
        seeds += [(group, momentum, high), (group, "max_momentum", high), (group, "base_momentum", low)]
    return seeds


# ---- cycles ----------------------------------------------------------------------------------
class _CyclesMomentum(LRScheduler):
    """Shared by OneCycleLR and CyclicLR: remembers the momentum it set, and restores it on load."""

    _momentum: str | None
    _last_momentum: list[float]

    def _advance(self, epoch: int | None) -> None:
        super()._advance(epoch)
        if self._momentum is not None:
            self._last_momentum = [_read(g, self._momentum) for g in self.optimizer.param_groups]

    def _write_back(self) -> None:
        super()._write_back()
        if self._momentum is not None:
            for group, value in zip(self.optimizer.param_groups, self._last_momentum):
                _write(group, self._momentum, value)


class OneCycleLR(_CyclesMomentum):
    r"""``torch.optim.lr_scheduler.OneCycleLR`` (Smith & Topin, 2017): the learning rate rises from
    ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then
    anneals to ``max_lr / div_factor / final_div_factor``; the momentum (β₁ for Adam) moves
    inversely, ``max_momentum`` → ``base_momentum`` → ``max_momentum``. With ``three_phase``,
    the lr comes back down symmetrically before the final anneal. Each leg anneals by cosine,
    :math:`b + \tfrac12(a - b)(1 + \cos \pi p)`, or linearly
    (:func:`fastoptim.schedules.one_cycle`). Not chainable; stepping past ``total_steps``
    raises ValueError.

    As in torch, the groups get ``initial_lr``, ``max_lr`` and ``min_lr`` (``initial_<name>``
    and so on for another ``param_name``), and ``max_momentum``/``base_momentum``; the schedule
    reads them from the groups at each step.

    Args:
        max_lr: the peak, a number or one per group.
        total_steps: steps in the cycle; or give ``epochs`` and ``steps_per_epoch``.
        pct_start: the share of the steps spent rising (default 0.3).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
        cycle_momentum: cycle ``momentum`` or ``betas[0]`` too (default True).
        base_momentum, max_momentum: the momentum's bounds (defaults 0.85, 0.95; or one per group).
        div_factor: initial lr = max_lr / div_factor (default 25).
        final_div_factor: final lr = initial lr / final_div_factor (default 1e4).
        three_phase: the original paper's three phases (default False: fastai's two).
    """

    def __init__(self, optimizer: SupportsParamGroups, max_lr: float | Sequence[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85, max_momentum: float | Sequence[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1, *, param_name: str = "lr") -> None:
        groups = check_param_groups(optimizer)
        if total_steps is not None:
            self.total_steps = check_int("total_steps", total_steps, low=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = check_int("epochs", epochs, low=1) * check_int("steps_per_epoch", steps_per_epoch, low=1)
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        schedules.one_cycle_phases(self.total_steps, pct_start, three_phase)
        self.pct_start = check_real("pct_start", pct_start, low=0.0, high=1.0)
        self.three_phase = check_bool("three_phase", three_phase)
        self.anneal_strategy = schedules.check_choice("anneal_strategy", anneal_strategy, schedules.ANNEAL_STRATEGIES)
        div = check_real("div_factor", div_factor, low=0.0, low_open=True)
        final_div = check_real("final_div_factor", final_div_factor, low=0.0, low_open=True)
        name = check_param_name(groups, param_name)
        fresh = check_int("last_epoch", last_epoch, low=-1) == -1
        peaks = check_per_group("max_lr", max_lr, groups, low=0.0)
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum)
        self._momentum = _momentum_name(groups, name) if self.cycle_momentum else None
        self._last_momentum = []
        seeds: list[Seed] = []
        if self._momentum is not None:
            highs = check_per_group("max_momentum", max_momentum, groups, low=0.0)
            lows = check_per_group("base_momentum", base_momentum, groups, low=0.0)
            if fresh:
                seeds += _momentum_seeds(groups, self._momentum, highs, lows)
        if fresh:
            for group, peak in zip(groups, peaks):
                seeds += [(group, f"initial_{name}", peak / div), (group, f"max_{name}", peak),
                          (group, f"min_{name}", peak / div / final_div)]
        super().__init__(optimizer, last_epoch, param_name=name, _seeds=seeds)

    def get_lr(self) -> list[float]:
        t, total, name = self.last_epoch, self.total_steps, self.param_name
        if t > total:
            raise ValueError(f"OneCycleLR was stepped to step {t}, past total_steps={total}")
        shape = (self.pct_start, self.anneal_strategy, self.three_phase)
        values = []
        for group in self.optimizer.param_groups:
            values.append(schedules.one_cycle(t, total, group[f"initial_{name}"], group[f"max_{name}"],
                                              group[f"min_{name}"], *shape))
            if self._momentum is not None:
                high, low = group["max_momentum"], group["base_momentum"]
                _write(group, self._momentum, schedules.one_cycle(t, total, high, low, high, *shape))
        return values


class CyclicLR(_CyclesMomentum):
    r"""``torch.optim.lr_scheduler.CyclicLR`` (Smith, 2017): the learning rate runs a triangle
    between ``base_lr`` and ``max_lr`` (up for ``step_size_up`` steps, down for
    ``step_size_down``), its amplitude scaled by ``mode``; the momentum (β₁ for Adam) runs the
    inverse triangle between ``max_momentum`` and ``base_momentum``:

    .. math::
        \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\,h_t\,s, \qquad
        m_t = m_{max} - (m_{max} - m_{base})\,h_t\,s

    with :math:`h_t \in [0, 1]` the height in the triangle and s = 1 (``"triangular"``),
    :math:`2^{1-c}` in cycle c (``"triangular2"``), :math:`\gamma^t` (``"exp_range"``), or
    ``scale_fn`` of the cycle or the step (``scale_mode``), which overrides ``mode``. Closed form
    (:func:`fastoptim.schedules.cyclic_lr`). The constructor sets the groups' lr to ``base_lr``.

    Args:
        base_lr, max_lr: the bounds, a number or one per group.
        step_size_up: steps rising (> 0, default 2000); step_size_down: steps falling (≥ 0,
            default: the same).
        mode: ``"triangular"`` (default), ``"triangular2"`` or ``"exp_range"``.
        gamma: γ of ``"exp_range"`` (default 1).
        scale_fn: a custom scale s(x) in [0, 1]; scale_mode: its x, ``"cycle"`` or ``"iterations"``.
        cycle_momentum: cycle ``momentum`` or ``betas[0]`` too (default True, as torch).
        base_momentum, max_momentum: the momentum's bounds (defaults 0.8, 0.9; or one per group).

    Unlike torch, the first value uses ``base_lr`` even when an earlier scheduler left an
    ``initial_lr`` in the groups (torch uses that stale ``initial_lr`` for step 0 only).
    """

    _callables = ("_scale_fn_custom",)

    def __init__(self, optimizer: SupportsParamGroups, base_lr: float | Sequence[float],
                 max_lr: float | Sequence[float], step_size_up: float = 2000, step_size_down: float | None = None,
                 mode: str = "triangular", gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
                 scale_mode: str = "cycle", cycle_momentum: bool = True, base_momentum: float | Sequence[float] = 0.8,
                 max_momentum: float | Sequence[float] = 0.9, last_epoch: int = -1, *, param_name: str = "lr") -> None:
        groups = check_param_groups(optimizer)
        name = check_param_name(groups, param_name)
        fresh = check_int("last_epoch", last_epoch, low=-1) == -1
        self.base_lrs = check_per_group("base_lr", base_lr, groups, low=0.0)
        self.max_lrs = check_per_group("max_lr", max_lr, groups, low=0.0)
        self.step_size_up, self.step_size_down = schedules.check_cyclic_sizes(step_size_up, step_size_down)
        self.mode = schedules.check_choice("mode", mode, schedules.CYCLIC_MODES)
        self.gamma = check_real("gamma", gamma, low=0.0)
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"scale_fn must be callable, got {type(scale_fn).__name__}")
        self._scale_fn_custom = scale_fn
        if scale_fn is not None:
            self.scale_mode = schedules.check_choice("scale_mode", scale_mode, ("cycle", "iterations"))
        else:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum)
        self._momentum = _momentum_name(groups, name) if self.cycle_momentum else None
        self._last_momentum = []
        self.base_momentums: list[float] = []
        self.max_momentums: list[float] = []
        seeds: list[Seed] = []
        if fresh:
            seeds += [(group, name, value) for group, value in zip(groups, self.base_lrs)]
        if self._momentum is not None:
            self.base_momentums = check_per_group("base_momentum", base_momentum, groups, low=0.0)
            self.max_momentums = check_per_group("max_momentum", max_momentum, groups, low=0.0)
            if fresh:
                seeds += _momentum_seeds(groups, self._momentum, self.max_momentums, self.base_momentums)
        super().__init__(optimizer, last_epoch, param_name=name, _seeds=seeds)

    def _base_values(self) -> list[float]:
        return list(self.base_lrs)

    def _shape(self) -> tuple[Any, ...]:
        return (self.step_size_up, self.step_size_down, self.mode, self.gamma, self._scale_fn_custom, self.scale_mode)

    def get_lr(self) -> list[float]:
        t, shape = self.last_epoch, self._shape()
        if self._momentum is not None:
            for group, low, high in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                _write(group, self._momentum, schedules.cyclic_momentum(t, low, high, *shape))
        return [schedules.cyclic_lr(t, low, high, *shape) for low, high in zip(self.base_lrs, self.max_lrs)]


# ---- composition -----------------------------------------------------------------------------
def _check_children(owner: str, optimizer: Any, schedulers: Any) -> list[LRScheduler]:
    if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, Sequence):
        raise TypeError(f"{owner} takes a list of schedulers, got {type(schedulers).__name__}")
    if len(schedulers) < 1:
        raise ValueError(f"{owner} needs at least one scheduler, got none")
    for i, child in enumerate(schedulers):
        if not isinstance(child, LRScheduler):
            raise TypeError(f"schedulers[{i}] must be a fastoptim scheduler, got {type(child).__name__}")
        if isinstance(child, ReduceLROnPlateau):
            raise ValueError(f"schedulers[{i}] is a ReduceLROnPlateau, which {owner} cannot drive (its step needs a "
                             "metric)")
        if not _same_optimizer(child.optimizer, optimizer):
            raise ValueError(f"schedulers[{i}] ({type(child).__name__}) is bound to a different optimizer than "
                             f"the {owner}")
    return list(schedulers)


def _undo_initial_steps(scheduler: LRScheduler) -> None:
    """Take back the constructor's step of every scheduler under `scheduler` (torch's recursive_undo)."""
    if isinstance(scheduler, (SequentialLR, ChainedScheduler)):
        for child in scheduler._schedulers:
            _undo_initial_steps(child)
    else:
        scheduler.last_epoch -= 1


class SequentialLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.SequentialLR``: schedulers one after another. Scheduler i runs
    from milestone i-1 to milestone i; at its milestone it restarts at its own step 0 from the
    base lr (by its closed form where it has one), as in torch. In closed form:
    :func:`fastoptim.schedules.sequential`.

    Args:
        schedulers: the schedulers, all bound to `optimizer` and scheduling the same param_name.
        milestones: the steps (≥ 1, strictly increasing) where the next scheduler takes over; one
            fewer than the schedulers.
        last_epoch: -1 (default) starts; ``n ≥ 0`` replays the first n + 1 steps, so that it is
            where a run built with -1 is after n + 1 steps (torch ignores it here).

    ``state_dict()`` holds the children's state dicts and resumes exactly.
    """

    def __init__(self, optimizer: SupportsParamGroups, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        groups = check_param_groups(optimizer)
        children = _check_children("SequentialLR", optimizer, schedulers)
        marks = schedules.check_milestones("milestones", milestones, strict=True, low=1)
        if len(marks) != len(children) - 1:
            raise ValueError(f"milestones must have one entry fewer than schedulers: got {len(marks)} milestones "
                             f"for {len(children)} schedulers")
        names = {child.param_name for child in children}
        if len(names) != 1:
            raise ValueError(f"the schedulers schedule different hyper-parameters {sorted(names)}; SequentialLR "
                             "needs one")
        replay = check_int("last_epoch", last_epoch, low=-1) + 1
        self.optimizer = optimizer
        self.param_name = children[0].param_name
        self._schedulers = children
        self._milestones = marks
        self.last_epoch = 0
        key = children[0]._initial_key
        with _restored_on_error(groups):
            for group in groups:  # back to the base values, and take back every child's first step
                _write(group, self.param_name, group[key])
            _undo_initial_steps(self)
            self._schedulers[0]._initial_step()
            self._last_lr = self._schedulers[0].get_last_lr()
            for _ in range(replay):
                self.step()

    def step(self) -> None:
        """Advance one step: the scheduler of this step steps, or restarts at its milestone."""
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        child = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            child._advance(0)
        else:
            child.step()
        self._last_lr = child.get_last_lr()

    def _advance(self, epoch: int | None) -> None:
        if epoch is None:
            self.step()
            return
        self.last_epoch = epoch
        index = bisect_right(self._milestones, epoch)
        self._schedulers[index]._advance(epoch - (self._milestones[index - 1] if index else 0))
        self._last_lr = self._schedulers[index].get_last_lr()

    def _write_back(self) -> None:
        # the active child's values (its momentum too) win over those of the children not running
        self._schedulers[bisect_right(self._milestones, self.last_epoch)]._write_back()
        super()._write_back()


class ChainedScheduler(LRScheduler):
    """``torch.optim.lr_scheduler.ChainedScheduler``: every scheduler steps, in order, at each
    step, so their (chainable) effects compound, e.g. a warmup times a decay.

    Args:
        schedulers: the schedulers, all bound to the same optimizer.
        optimizer: that optimizer (default: the first scheduler's).

    ``get_last_lr()`` reads the last scheduler's hyper-parameter. ``state_dict()`` holds the
    children's state dicts and resumes exactly.
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: SupportsParamGroups | None = None) -> None:
        bound: Any = optimizer
        if bound is None and isinstance(schedulers, Sequence) and schedulers and isinstance(schedulers[0], LRScheduler):
            bound = schedulers[0].optimizer
        self._schedulers = _check_children("ChainedScheduler", bound, schedulers)
        check_param_groups(bound)
        self.optimizer = bound
        self.param_name = self._schedulers[-1].param_name
        self._last_lr = self._current()

    def step(self) -> None:
        """Step every scheduler, in order."""
        for child in self._schedulers:
            child.step()
        self._last_lr = self._current()

    def _advance(self, epoch: int | None) -> None:
        for child in self._schedulers:
            child._advance(epoch)
        self._last_lr = self._current()

    def _write_back(self) -> None:
        for child in self._schedulers:
            child._write_back()
        super()._write_back()


# ---- on a metric -----------------------------------------------------------------------------
class ReduceLROnPlateau(LRScheduler):
    r"""``torch.optim.lr_scheduler.ReduceLROnPlateau``: multiply the lr by ``factor`` when a
    metric has not improved for more than ``patience`` steps.

    At each ``step(metric)``, the metric improves on the best so far when

    ========= =============================== ==========================
    mode      threshold_mode ``"rel"``        threshold_mode ``"abs"``
    ========= =============================== ==========================
    ``min``   metric < best · (1 - threshold) metric < best - threshold
    ``max``   metric > best · (1 + threshold) metric > best + threshold
    ========= =============================== ==========================

    else it counts a bad step. After more than ``patience`` bad steps,
    :math:`\eta \leftarrow \max(\eta \cdot \text{factor}, \text{min\_lr})` in each group where
    that lowers η by more than ``eps``; then ``cooldown`` steps follow whose bad steps do not count.

    Args:
        mode: ``"min"`` (default: lower is better) or ``"max"``.
        factor: in [0, 1) (default 0.1).
        patience: bad steps tolerated (default 10).
        threshold: ≥ 0 (default 1e-4); threshold_mode: ``"rel"`` (default) or ``"abs"``.
        cooldown: steps without counting after a reduction (default 0).
        min_lr: lower bound, a number or one per group (default 0).
        eps: smallest change applied (default 1e-8).
    """

    def __init__(self, optimizer: SupportsParamGroups, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0, eps: float = 1e-8, *, param_name: str = "lr") -> None:
        groups = check_param_groups(optimizer)
        self.optimizer = optimizer
        self.param_name = check_param_name(groups, param_name)
        self.mode = schedules.check_choice("mode", mode, ("min", "max"))
        self.factor = check_real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = check_int("patience", patience, low=0)
        self.threshold = check_real("threshold", threshold, low=0.0)
        self.threshold_mode = schedules.check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int("cooldown", cooldown, low=0)
        self.min_lrs = check_per_group("min_lr", min_lr, groups, low=0.0)
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.eps = check_real("eps", eps, low=0.0)
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current()
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, metric: float, best: float) -> bool:
        """Whether `metric` improves on `best` (see the table above)."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return metric < best * (1.0 - self.threshold)
        if self.mode == "min":
            return metric < best - self.threshold
        if self.threshold_mode == "rel":
            return metric > best * (self.threshold + 1.0)
        return metric > best + self.threshold

    # Unlike LRScheduler.step, this one needs the metric (as torch's does): an unavoidable override.
    def step(self, metrics: SupportsFloat) -> None:  # type: ignore[override]
        """Record the metric of this step (a number or a 0-d array) and reduce the lr if it stalled."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current()

    def _reduce(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(f"the optimizer has {len(groups)} param groups, but min_lr was given for "
                                 f"{len(self.min_lrs)}; set min_lrs to one value per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, low in zip(groups, self.min_lrs):
            old = float(_read(group, self.param_name))
            new = max(old * self.factor, low)
            if old - new > self.eps:
                _write(group, self.param_name, new)
