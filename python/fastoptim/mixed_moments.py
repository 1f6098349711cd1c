"""ADOPT, Adan and AdEMAMix: Adam's descendants that mix their moments otherwise."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["ADOPT", "Adan", "AdEMAMix"]


class ADOPT(Optimizer):
    r"""ADOPT (Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β2 with the Optimal
    Rate", 2024), as ``pytorch_optimizer.ADOPT`` with its clipping schedule; torch has no twin.
    The step normalizes by the second moment of the previous steps, then takes the momentum.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\theta_{t-1} \quad\text{(or }
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \lambda\gamma)\text{ with weight\_decouple)} \\
        t = 1:&\quad v_1 \leftarrow g_1^2 \quad\text{(the parameter moves by the decoupled decay only)} \\
        t \ge 2:&\quad n_t = \operatorname{clip}\bigl(g_t / \max(\sqrt{v_{t-1}}, \epsilon),\ \pm t^{e}\bigr),\quad
            m_t \leftarrow m_{t-1} + (1-\beta_1)(n_t - m_{t-1}) \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \gamma m_t,\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.9999)).
        eps: ε, the floor of the denominator, >= 0 (default 1e-6).
        weight_decay: λ, >= 0 (default 0.0).
        weight_decouple: decay the weights, θ ← θ(1 − γλ), instead of adding λθ to g (default False).
        fixed_decay: with weight_decouple, θ ← θ(1 − λ), not scaled by γ (default False).
        clip_exponent: e in the clipping bound t^e of the normalized gradient, >= 0 (default 0.25).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    ``clip_exponent`` stands for pytorch_optimizer's ``clip_lambda=lambda step: step ** e``
    (its default, and the paper's choice, is e = 0.25).

    State per parameter: ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.ADOPT([w], lr=1e-2)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adopt"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.9999), eps: float = 1e-6,
                 weight_decay: float = 0.0, *, weight_decouple: bool = False, fixed_decay: bool = False,
                 clip_exponent: float = 0.25, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      weight_decouple=weight_decouple, fixed_decay=fixed_decay,
                                      clip_exponent=clip_exponent, maximize=maximize), **options)


class Adan(Optimizer):
    r"""Adan, adaptive Nesterov momentum (Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm
    for Faster Optimizing Deep Models", 2022, Algorithm 1), as ``optax.adan``; torch has no twin.
    The β's are optax's (b1, b2, b3): the paper's 1 − β.

    .. math::
        d_t &= g_t - g_{t-1}\ (d_1 = 0),\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
            s_t \leftarrow \beta_2 s_{t-1} + (1-\beta_2) d_t \\
        n_t &\leftarrow \beta_3 n_{t-1} + (1-\beta_3)(g_t + (1-\beta_2) d_t)^2 \\
        u_t &= \frac{m_t/(1-\beta_1^t) + (1-\beta_2)\,s_t/(1-\beta_2^t)}
            {\sqrt{n_t/(1-\beta_3^t) + \epsilon_{root}} + \epsilon} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma (u_t + \lambda\theta_{t-1})

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2, β3), each in [0, 1) (default (0.98, 0.92, 0.99), optax's).
        eps: ε added outside the square root, >= 0 (default 1e-8).
        eps_root: ε_root added inside it, >= 0 (default 1e-8).
        weight_decay: decoupled weight decay λ, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg`` (m), ``exp_avg_diff`` (s), ``exp_avg_sq`` (n) and
    ``prev_grad`` (optax's m, v, n and g).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adan([w], lr=1e-2)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adan"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
                 eps: float = 1e-8, eps_root: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, eps_root=eps_root, weight_decay=weight_decay,
                                      maximize=maximize), **options)


class AdEMAMix(Optimizer):
    r"""AdEMAMix, Adam with a mixture of a fast and a slow EMA of the gradient (Pagliardini et
    al., "The AdEMAMix Optimizer: Better, Faster, Older", 2024), as ``optax.contrib.ademamix``
    with the paper's warmups of α and β3; torch has no twin.

    .. math::
        \alpha_t &= \min(t\alpha/T, \alpha),\quad
            \beta_{3,t} = \min\Bigl(\exp\frac{\ln\beta_1 \ln\beta_3}{(1 - t/T)\ln\beta_3 + (t/T)\ln\beta_1},
            \beta_3\Bigr) \quad (\alpha, \beta_3 \text{ when } T = 0 \text{ or } t \ge T) \\
        m_{1,t} &\leftarrow \beta_1 m_{1,t-1} + (1-\beta_1) g_t,\quad
            m_{2,t} \leftarrow \beta_{3,t} m_{2,t-1} + (1-\beta_{3,t}) g_t,\quad
            v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\Bigl(\frac{m_{1,t}/(1-\beta_1^t) + \alpha_t m_{2,t}}
            {\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda\theta_{t-1}\Bigr)

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2, β3): β1 in (0, 1), β2 and β3 in [0, 1) (default (0.9, 0.999, 0.9999)).
        alpha: α, the weight of the slow EMA, >= 0 (default 5.0).
        t_alpha_beta3: T, the steps of the warmups of α and β3; 0 or None: none (default 0.0).
        eps: ε, >= 0 (default 1e-8).
        weight_decay: decoupled weight decay λ, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        cautious: drop the components of m1 that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg`` (m1), ``exp_avg_sq`` (v), ``exp_avg_slow`` (m2).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.AdEMAMix([w], lr=1e-2, t_alpha_beta3=1000)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "ademamix"
    _cautious_rule = "ademamix_cautious"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
                 alpha: float = 5.0, t_alpha_beta3: float | None = 0.0, eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False, cautious: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha,
                                      t_alpha_beta3=0.0 if t_alpha_beta3 is None else t_alpha_beta3, eps=eps,
                                      weight_decay=weight_decay, maximize=maximize), cautious=cautious, **options)
