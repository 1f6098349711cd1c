"""AdaBound and AMSBound (Luo et al., 2019); torch has no twin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .optimizer import Optimizer, ParamGroup

__all__ = ["AdaBound"]


class AdaBound(Optimizer):
    r"""AdaBound (Luo, Xiong, Liu & Sun, ICLR 2019), following the authors' reference code.
    PyTorch has no AdaBound; names follow the paper's code.

    .. math::
        g_t &\leftarrow g_t + \lambda\theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \text{ (amsbound) or } v_t \\
        f &= \text{final\_lr}\cdot\gamma/\gamma_0,\quad
            \ell_t = f\,(1 - \tfrac{1}{\zeta t + 1}),\quad u_t = f\,(1 + \tfrac{1}{\zeta t}) \\
        \theta_t &\leftarrow \theta_{t-1} - \operatorname{clamp}\!\Big(
            \frac{\gamma\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{\hat v_t}+\epsilon}, \ell_t, u_t\Big)\, m_t

    γ₀ is the group's lr when it was created, kept in the group as ``initial_lr`` (the key
    torch's schedulers use for the same thing), so a schedule scales the final lr with γ.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, >= 0, and > 0 when a group is created (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        final_lr: the SGD learning rate both bounds converge to, >= 0 (default 0.1).
        gamma: convergence speed ζ of the bounds, in (0, 1) (default 1e-3).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        amsbound: keep the running maximum of v (AMSBound) (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsbound).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.AdaBound([w], lr=1e-3, final_lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "adabound"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 final_lr: float = 0.1, gamma: float = 1e-3, eps: float = 1e-8, weight_decay: float = 0.0,
                 amsbound: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, final_lr=final_lr, gamma=gamma, eps=eps,
                                      weight_decay=weight_decay, amsbound=amsbound), **options)

    def _check_relations(self, group: Mapping[str, Any]) -> None:
        if "initial_lr" not in group and group["lr"] <= 0:  # initial_lr falls back to lr
            raise ValueError("AdaBound needs lr > 0 when a group is created: final_lr is scaled by lr / initial lr")

    def _new_group(self, raw: Any, pending: Sequence[ParamGroup]) -> ParamGroup:
        group = super()._new_group(raw, pending)
        dict.setdefault(group, "initial_lr", group["lr"])
        return group
