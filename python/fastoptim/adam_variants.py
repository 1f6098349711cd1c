"""Adam's relatives in torch.optim: Adamax, NAdam and RAdam."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["NAdam", "RAdam", "Adamax"]


class Adamax(Optimizer):
    r"""Adamax, Adam with the infinity norm (Kingma & Ba, 2015, §7) — ``torch.optim.Adamax``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        u_t &\leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 2e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the infinity norm, >= 0 (default 1e-8).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_inf``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adamax([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adamax"

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         **options)


class NAdam(Optimizer):
    r"""NAdam, Adam with Nesterov momentum (Dozat, 2016) — ``torch.optim.NAdam``.

    .. math::
        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}),\quad \Pi_t = \textstyle\prod_{i \le t} \mu_i \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma(1-\mu_t)}{1-\Pi_t}\frac{g_t}{d_t}
            - \frac{\gamma\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac{m_t}{d_t}

    with ``g ← ±g + λθ`` (or ``θ ← θ(1−γλ)`` when decoupled_weight_decay).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 2e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: λ, >= 0: an L2 penalty, or decoupled weight decay (default 0.0).
        momentum_decay: ψ, >= 0 (default 4e-3).
        decoupled_weight_decay: decay the weights directly, as AdamW does (default False).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq``, and the scalar ``mu_product`` (Π).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.NAdam([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "nadam"

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize), **options)


class RAdam(Optimizer):
    r"""RAdam, rectified Adam (Liu et al., 2020) — ``torch.optim.RAdam``.

    .. math::
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1,\quad \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, r_t \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{v_t}+\epsilon},\quad
            r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
            \quad\text{if } \rho_t > 5 \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t} m_t \quad\text{otherwise}

    with ``g ← ±g + λθ`` (or ``θ ← θ(1−γλ)`` when decoupled_weight_decay).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: λ, >= 0: an L2 penalty, or decoupled weight decay (default 0.0).
        decoupled_weight_decay: decay the weights directly, as AdamW does (default False).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.RAdam([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "radam"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize), **options)
