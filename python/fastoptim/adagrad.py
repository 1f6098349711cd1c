"""Adagrad (torch.optim.Adagrad)."""

from __future__ import annotations

import inspect
from typing import Any

from .optimizer import Optimizer
from .rowwise_adagrad import RowwiseAdagrad

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011) — ``torch.optim.Adagrad``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\theta_{t-1} \\
        s_t &\leftarrow s_{t-1} + g_t^2 \qquad (s_0 = \text{initial\_accumulator\_value}) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 + (t-1)\eta}\,\frac{g_t}{\sqrt{s_t} + \epsilon}

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-2).
        lr_decay: learning-rate decay η, >= 0 (default 0.0).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        initial_accumulator_value: s_0, the starting sum of squares, >= 0 (default 0.0).
        eps: ε added to the denominator, >= 0 (default 1e-10).
        maximize: ascend the objective instead of descending (default False).
        rowwise: one accumulator per row, for embedding tables: a RowwiseAdagrad (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``sum``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adagrad([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adagrad"

    def __new__(cls, *args: Any, rowwise: bool = False, **kwargs: Any) -> Any:
        if rowwise is not True and rowwise is not False:
            raise TypeError(f"rowwise must be True or False, got {rowwise!r}")
        if rowwise:  # not an Adagrad: Python then leaves it to RowwiseAdagrad's own __init__
            return RowwiseAdagrad(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 rowwise: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize),
                         **options)


# inspect.signature reads __new__ before __init__; the arguments are __init__'s.
_init = inspect.signature(Adagrad.__init__)
Adagrad.__signature__ = _init.replace(parameters=list(_init.parameters.values())[1:])  # type: ignore[attr-defined]
