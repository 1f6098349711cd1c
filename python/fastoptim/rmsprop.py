"""RMSprop (torch.optim.RMSprop), with Nesterov momentum beyond torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, Coursera lecture 6e, 2012) — ``torch.optim.RMSprop``, plus ``nesterov``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\theta_{t-1} \\
        s_t &\leftarrow \alpha s_{t-1} + (1-\alpha) g_t^2 \\
        \bar g_t &\leftarrow \alpha \bar g_{t-1} + (1-\alpha) g_t,\quad
            \tilde s_t = s_t - \bar g_t^2 \text{ (centered), else } s_t \\
        u_t &= g_t / (\sqrt{\tilde s_t} + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma u_t \text{ (no momentum)} \\
        b_t &\leftarrow \mu b_{t-1} + u_t,\quad \theta_t \leftarrow \theta_{t-1} - \gamma b_t
            \text{ (momentum, as torch)} \\
        &\phantom{\leftarrow}\ \theta_t \leftarrow \theta_{t-1} - \gamma (u_t + \mu b_t)
            \text{ (nesterov=True: beyond torch)}

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-2).
        alpha: smoothing constant α of the running averages, in [0, 1] (default 0.99).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        momentum: momentum factor μ, >= 0 (default 0.0).
        centered: divide by the estimated variance of the gradient instead of its second moment (default False).
        maximize: ascend the objective instead of descending (default False).
        nesterov: Nesterov momentum, beyond torch; needs momentum > 0 (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.RMSprop([w], lr=0.01, momentum=0.9)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "rmsprop"

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False, nesterov: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize, nesterov=nesterov), **options)

    def _check_relations(self, group: Mapping[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
