"""Lion (Chen et al., 2023); torch has no twin."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer

__all__ = ["Lion"]


class Lion(Optimizer):
    r"""Lion, evolved sign momentum (Chen et al., "Symbolic Discovery of Optimization
    Algorithms", 2023, Algorithm 2). PyTorch has no Lion.

    .. math::
        c_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,(\operatorname{sign}(c_t) + \lambda\theta_{t-1})
            \qquad (\operatorname{sign}(0) = 0) \\
        m_t &\leftarrow \beta_2 m_{t-1} + (1-\beta_2) g_t

    Use a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger (the paper's advice).

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0 (default 1e-4).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.99)).
        weight_decay: decoupled weight decay λ, >= 0 (default 0.0).
        maximize: ascend the objective instead of descending (default False).
        cautious: drop the update's components that disagree in sign with g, rescale the rest (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Lion([w], lr=1e-3)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "lion"
    _cautious_rule = "lion_cautious"

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, *, maximize: bool = False, cautious: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize),
                         cautious=cautious, **options)
