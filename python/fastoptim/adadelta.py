"""Adadelta (torch.optim.Adadelta)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012) — ``torch.optim.Adadelta``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\theta_{t-1} \\
        s_t &\leftarrow \rho s_{t-1} + (1-\rho) g_t^2 \\
        \Delta_t &\leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}\, g_t \\
        u_t &\leftarrow \rho u_{t-1} + (1-\rho)\Delta_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\Delta_t

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1.0).
        rho: decay ρ of the running averages, in [0, 1] (default 0.9).
        eps: ε inside the square roots, >= 0 (default 1e-6).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``square_avg``, ``acc_delta``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adadelta([w], lr=1.0)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adadelta"

    def __init__(self, params: Any, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                 *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize), **options)
