"""Adam, AMSGrad and AdamW (torch.optim.Adam, torch.optim.AdamW)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with optional AMSGrad (Reddi et al., 2018) — ``torch.optim.Adam``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda\,\theta_{t-1}
            \quad\text{(or } \theta_{t-1} \leftarrow \theta_{t-1}(1-\gamma\lambda)
            \text{ with decoupled weight decay)} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\,g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \text{ (amsgrad) or } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ε is added outside the square root, as in PyTorch (optax's ``eps_root`` adds it inside).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: λ, >= 0: an L2 penalty added to the gradient, or decoupled (default 0.0).
        amsgrad: keep the running maximum of v (default False).
        maximize: ascend the objective instead of descending (default False).
        decoupled_weight_decay: decay the weights directly, as AdamW does (default False).
        cautious: drop the update's components that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adam([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adam"
    _cautious_rule = "adam_cautious"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False, cautious: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay),
                         cautious=cautious, **options)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019) — ``torch.optim.AdamW``: Adam with decoupled weight decay,

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \\
        g_t &\leftarrow \pm g_t \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\,g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \text{ (amsgrad) or } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    the decay first, then the Adam update (see :class:`Adam`). Defaults as torch: weight_decay 1e-2.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: decoupled weight decay λ, >= 0 (default 1e-2).
        amsgrad: keep the running maximum of v (default False).
        maximize: ascend the objective instead of descending (default False).
        cautious: drop the update's components that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.AdamW([w], lr=0.1, weight_decay=1e-2)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _schema_defaults = {"weight_decay": 1e-2, "decoupled_weight_decay": True}  # Adam's rule, decoupled

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, cautious: bool = False, **options: Any) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, cautious=cautious, **options)
