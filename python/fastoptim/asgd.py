"""Averaged SGD (torch.optim.ASGD)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["ASGD"]


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent (Polyak & Juditsky, "Acceleration of Stochastic
    Approximation by Averaging", 1992) — ``torch.optim.ASGD``, with its decaying step size.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda_{wd}\,\theta_{t-1} \\
        \theta_t &\leftarrow \theta_{t-1}(1 - \lambda\eta_t) - \eta_t g_t \\
        \bar\theta_t &\leftarrow \theta_t \text{ if } \mu_t = 1, \text{ else }
            \bar\theta_{t-1} + \mu_t(\theta_t - \bar\theta_{t-1}) \\
        \eta_{t+1} &= \gamma / (1 + \lambda\gamma t)^{\alpha} \quad (\eta_1 = \gamma),\qquad
            \mu_{t+1} = 1 / \max(1, t - t_0) \quad (\mu_1 = 1)

    As torch, η_{t+1} is computed with the learning rate of step t (a scheduler's change reaches
    the step after). The average :math:`\bar\theta` is the state ``ax``.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-2).
        lambd: decay term λ, >= 0 (default 1e-4).
        alpha: power α of the step-size decay (default 0.75).
        t0: the step after which averaging starts (default 1e6).
        weight_decay: L2 penalty λ_wd, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``ax`` (float32 for a bfloat16 parameter unless ``state_dtype`` says
    otherwise: it averages weights), and the running scalars ``eta`` and ``mu`` (torch's: the next
    step's η and μ) and ``eta_now`` and ``mu_now`` (this step's).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.ASGD([w], lr=0.1, t0=0)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "asgd"
    _state_holds_weights = True  # ax: float32 for bfloat16 parameters

    def __init__(self, params: Any, lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
                 weight_decay: float = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                                      maximize=maximize), **options)
