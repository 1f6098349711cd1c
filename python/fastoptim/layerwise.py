"""Large-batch rules that scale each array by a ratio of norms: LAMB and LARS (torch has neither)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["LAMB", "LARS"]


class LAMB(Optimizer):
    r"""LAMB (You et al., ICLR 2020, Algorithm 2 with bias correction). PyTorch has no LAMB.

    .. math::
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        r_t &= \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda\theta_{t-1} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,\frac{\lVert\theta_{t-1}\rVert}{\lVert r_t\rVert}\, r_t

    per parameter array; the trust ratio is 1 where either norm is 0. Norms are summed in a
    fixed order, so results are the same bits on every CPU and thread count.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-6).
        weight_decay: decoupled weight decay λ, inside the trust ratio, >= 0 (default 0.0).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> w = np.ones(3, dtype=np.float32)
        >>> opt = fo.LAMB([w], lr=0.01)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "lamb"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), **options)


class LARS(Optimizer):
    r"""LARS (You, Gitman & Ginsburg, 2017, Algorithm 1). PyTorch has no LARS.

    .. math::
        \ell &= \eta\,\frac{\lVert w\rVert}{\lVert g\rVert + \lambda\lVert w\rVert}
            \quad\text{(per array; 1 where } \lVert w\rVert \text{ or } \lVert g\rVert \text{ is 0)} \\
        v &\leftarrow \mu v + \gamma\,\ell\,(g + \lambda w) \\
        w &\leftarrow w - v

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0; 1 since the trust coefficient already scales the step to η‖w‖ (default 1.0).
        momentum: momentum factor μ, in [0, 1) (default 0.9).
        weight_decay: λ, >= 0 (default 0.0).
        trust_coefficient: η, > 0 (default 1e-3).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``momentum_buffer``.

    Example:
        >>> w = np.ones(3, dtype=np.float32)
        >>> opt = fo.LARS([w], lr=1.0, momentum=0.9)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "lars"

    def __init__(self, params: Any, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1e-3, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient), **options)
