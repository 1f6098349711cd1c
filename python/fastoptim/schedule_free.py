"""Schedule-Free AdamW and SGD (Defazio et al., 2024), as the ``schedulefree`` package's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._checkpoint import read_hyper
from ._core import Plan
from ._state_format import ABSMAX
from ._validation import check_bool
from .optimizer import Optimizer

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeSGD"]

_MODE = "train_mode"  # the state dict's record of the mode


class ScheduleFree(Optimizer):
    """The mode both Schedule-Free optimizers share, and the switch of the parameters between
    y (train) and x (eval)."""

    _momentum_key: ClassVar[tuple[str, int | None]]  # where a group keeps β: ("betas", 0) or ("momentum", None)
    _state_holds_weights = True  # z: float32 for bfloat16 parameters

    def __init__(self, params: Any, defaults: Mapping[str, Any], **options: Any) -> None:
        self._train_mode = True
        super().__init__(params, defaults, **options)

    @property
    def training(self) -> bool:
        """True in train mode (the parameters hold y), False in eval mode (they hold x)."""
        return self._train_mode

    def train(self) -> None:
        """Put y, where gradients are taken, back in the parameters: p ← lerp(p, z, 1 − β).
        A no-op in train mode, and for a parameter that has not stepped yet."""
        self._switch(lambda beta: 1.0 - beta, True)

    def eval(self) -> None:
        """Put the average x in the parameters, to evaluate or save them: p ← lerp(p, z, 1 − 1/β).
        A no-op in eval mode, and for a parameter that has not stepped yet."""
        self._switch(lambda beta: 1.0 - 1.0 / beta, False)

    def _beta(self, group: Mapping[str, Any]) -> float:
        key, element = self._momentum_key
        value = group[key]
        return float(value if element is None else value[element])

    def _switch(self, weight_of: Any, train: bool) -> None:
        """One native pass over the parameters that have stepped, each group with its own β."""
        with self._lock:  # the mode is read and changed under it: two eval() calls switch once
            if self._train_mode == train:
                return
            self._refuse_inside_step("train() and eval()")
            self._refuse_swapped("train() and eval()")
            self._refresh()
            plan, held = self._built_plan(), self._held
            params: list[np.ndarray] = []
            states: list[list[np.ndarray | None]] = []
            absmax: list[list[np.ndarray | None] | None] = []
            group_of: list[int] = []
            names: list[Any] = []
            storages: list[str] = []
            index = 0
            for group_index, (group_params, group_names) in enumerate(zip(held.params, held.names)):
                for name, param in zip(group_names, group_params):
                    if not plan.fresh(index):  # z exists from a parameter's first step on
                        storage = self._storage(name, param)
                        params.append(param)
                        states.append([held.states[name]["z"]])
                        absmax.append([held.states[name]["z" + ABSMAX]] if storage == "int8" else None)
                        storages.append(storage)
                        group_of.append(group_index)
                        names.append(name)
                    index += 1
            if params:
                switch = Plan("schedule_free_switch", params, states, group_of, names, len(held.groups), ["z"],
                              [[None, None] for _ in params], storages, absmax)
                switch.set_rounding(False, 0, False)  # a bfloat16 parameter takes the nearest value
                for group_index, group in enumerate(held.groups):
                    switch.set_hyper(group_index, [weight_of(self._beta(read_hyper(group)))])
                switch.apply()
            self._train_mode = train

    def _refuse_eval_mode(self) -> None:
        if not self._train_mode:
            raise RuntimeError(f"{type(self).__name__} is in eval mode (the parameters hold the average x); "
                               "call opt.train() before stepping (nothing was changed)")

    def step(self, grads: Any = None, *, grad_scale: float | None = None) -> Any:
        with self._lock:  # re-entrant: no eval() from another thread between this check and the step
            self._refuse_eval_mode()
            return super().step(grads, grad_scale=grad_scale)

    step.__doc__ = Optimizer.step.__doc__

    def _step(self, grads: Any, grad_mult: float, max_norm: float | None, skip_nonfinite: bool,
              update_ema: bool = True) -> Any:
        with self._lock:  # the distributed wrappers step through here
            self._refuse_eval_mode()
            return super()._step(grads, grad_mult, max_norm, skip_nonfinite, update_ema)

    def _check_step(self, grads: Any) -> None:
        with self._lock:  # before DistributedOptimizer's first message: every rank raises alike
            self._refuse_eval_mode()
            super()._check_step(grads)

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`Optimizer.state_dict`, with ``"train_mode"``: the mode the parameters were in."""
        with self._lock:
            return {**super().state_dict(), _MODE: self._train_mode}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """As :meth:`Optimizer.load_state_dict`; the mode becomes the saved one (train mode when
        absent). The parameters are not touched: load the ones saved with it."""
        mode = state_dict.get(_MODE, True) if isinstance(state_dict, Mapping) else True
        check_bool(f"state_dict[{_MODE!r}]", mode)
        with self._lock:
            super().load_state_dict(state_dict)
            self._train_mode = bool(mode)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), _MODE: self._train_mode}

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        super().__setstate__(saved)
        self._train_mode = bool(saved.get(_MODE, True))


class ScheduleFreeAdamW(ScheduleFree):
    r"""Schedule-Free AdamW (Defazio et al., "The Road Less Scheduled", 2024), as the
    ``schedulefree`` package's ``AdamWScheduleFree``; torch has no twin. No learning-rate
    schedule is needed: the parameters average themselves.

    The parameter holds :math:`y` in train mode; :math:`z` is the base sequence and
    :math:`x = \mathrm{lerp}(z, y, 1/\beta_1)` the average. With :math:`k = t - 1`:

    .. math::
        \gamma_t &= \gamma \min(1, (k+1)/\mathrm{warmup\_steps}),\quad
            \gamma_{\max} \leftarrow \max(\gamma_{\max}, \gamma_t) \\
        w_t &= (k+1)^r \gamma_{\max}^{\,\mathrm{weight\_lr\_power}},\quad W \leftarrow W + w_t,\quad c_t = w_t / W \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
            u_t = g_t / (\sqrt{v_t / (1-\beta_2^t)} + \epsilon) + \lambda y_{t-1} \\
        y_t &\leftarrow \mathrm{lerp}(y_{t-1}, z_{t-1}, c_t) + \gamma_t (\beta_1 (1 - c_t) - 1)\, u_t \\
        z_t &\leftarrow z_{t-1} - \gamma_t u_t \qquad (z_0 = \theta_0)

    Call :meth:`eval` before evaluating or saving the parameters and :meth:`train` before the
    next step; unlike ``schedulefree``, a new optimizer starts in train mode (its ``train()``
    before the first step changes nothing there either). :meth:`step` refuses to run in eval mode.
    z is a copy of the weights, not a moment: for bfloat16 parameters it is float32 unless
    ``state_dtype`` says otherwise, and with ``state_dtype="int8"`` (or bfloat16 rounded to
    nearest) its steps below half a code's gap are lost. ``ZeroRedundancyOptimizer`` and
    ``Lookahead`` refuse these optimizers; ``DistributedOptimizer`` forwards ``train()`` and
    ``eval()``.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 0.0025).
        betas: (β1, β2): β1 in (0, 1), which interpolates y and z; β2 in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: λ, applied at y, >= 0 (default 0.0).
        warmup_steps: steps of linear learning-rate warmup, >= 0 (default 0).
        r: power of the step count in the averaging weights, >= 0 (default 0.0).
        weight_lr_power: power of the largest lr so far in the averaging weights, >= 0 (default 2.0).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``z``, ``exp_avg_sq``, and the running scalars ``lr_max`` (γmax,
    -1 before the first step) and ``weight_sum`` (W). The state dict also records ``train_mode``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.ScheduleFreeAdamW([w], lr=1e-2)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])

    (then ``opt.eval()`` puts the average x in ``w``, and ``opt.train()`` puts y back.)
    """

    _rule = "schedule_free_adamw"
    _momentum_key = ("betas", 0)

    def __init__(self, params: Any, lr: float = 0.0025, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: float = 0.0, r: float = 0.0, weight_lr_power: float = 2.0,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power), **options)


class ScheduleFreeSGD(ScheduleFree):
    r"""Schedule-Free SGD (Defazio et al., "The Road Less Scheduled", 2024), as the
    ``schedulefree`` package's ``SGDScheduleFree``; torch has no twin.

    As :class:`ScheduleFreeAdamW` with β1 = momentum and the plain gradient as direction:

    .. math::
        u_t &= g_t + \lambda y_{t-1} \\
        y_t &\leftarrow \mathrm{lerp}(y_{t-1}, z_{t-1}, c_t) + \gamma_t (\mu (1 - c_t) - 1)\, u_t \\
        z_t &\leftarrow z_{t-1} - \gamma_t u_t \qquad (z_0 = \theta_0)

    with γ_t, the averaging weights c_t and the train/eval switch as there (x = lerp(z, y, 1/μ)).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1.0).
        momentum: μ in (0, 1) (default 0.9).
        weight_decay: λ, applied at y, >= 0 (default 0.0).
        warmup_steps: steps of linear learning-rate warmup, >= 0 (default 0).
        r: power of the step count in the averaging weights, >= 0 (default 0.0).
        weight_lr_power: power of the largest lr so far in the averaging weights, >= 0 (default 2.0).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``z``, and the running scalars ``lr_max`` and ``weight_sum``. The
    state dict also records ``train_mode``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.ScheduleFreeSGD([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "schedule_free_sgd"
    _momentum_key = ("momentum", None)

    def __init__(self, params: Any, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 warmup_steps: float = 0.0, r: float = 0.0, weight_lr_power: float = 2.0, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power), **options)
