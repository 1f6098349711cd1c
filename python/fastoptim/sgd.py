"""Stochastic gradient descent with momentum (torch.optim.SGD)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import Optimizer

__all__ = ["SGD", "SGDW"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum — ``torch.optim.SGD``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\,\theta_{t-1} \\
        b_t &\leftarrow g_t \text{ at } t = 1, \text{ else } \mu\,b_{t-1} + (1-\tau)\,g_t \\
        g_t &\leftarrow g_t + \mu\,b_t \text{ (nesterov) or } b_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,g_t

    (``-g`` with ``maximize``; the momentum lines only when μ ≠ 0.) Nesterov momentum follows
    Sutskever et al. 2013 in PyTorch's form.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        momentum: momentum factor μ, >= 0 (default 0.0).
        dampening: dampening τ of the momentum, any finite real (default 0.0).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening = 0 (default False).
        maximize: ascend the objective instead of descending (default False).
        cautious: with momentum, drop the components that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``momentum_buffer`` (when momentum ≠ 0).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.SGD([w], lr=0.1, momentum=0.9)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "sgd"
    _cautious_rule = "sgd_cautious"

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False, cautious: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize),
                         cautious=cautious, **options)

    def _check_relations(self, group: Mapping[str, Any]) -> None:
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")


class SGDW(SGD):
    r"""SGD with decoupled weight decay (Loshchilov & Hutter, 2019, Algorithm 1). PyTorch has no
    SGDW: arguments and defaults follow ``torch.optim.SGD``, and a step equals torch's SGD with
    ``weight_decay=0`` after :math:`\theta \leftarrow \theta(1-\gamma\lambda)`.

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \\
        b_t &\leftarrow \pm g_t \text{ at } t = 1, \text{ else } \mu\,b_{t-1} + (1-\tau)(\pm g_t) \\
        g_t &\leftarrow \pm g_t + \mu\,b_t \text{ (nesterov) or } b_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,g_t

    The weights decay apart from the gradient, so the momentum carries the gradient alone (with
    SGD's L2 penalty it carries λθ too).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        momentum: momentum factor μ, >= 0 (default 0.0).
        dampening: dampening τ of the momentum, any finite real (default 0.0).
        weight_decay: decoupled weight decay λ, >= 0 (default 0.0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening = 0 (default False).
        maximize: ascend the objective instead of descending (default False).
        cautious: with momentum, drop the components that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``momentum_buffer`` (when momentum ≠ 0).

    Example:
        >>> w = np.ones(3, dtype=np.float32)
        >>> opt = fo.SGDW([w], lr=0.1, momentum=0.9, weight_decay=1e-2)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "sgdw"
    _cautious_rule = "sgdw_cautious"
