"""Rprop (torch.optim.Rprop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._validation import check_real
from .optimizer import Optimizer

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun, 1993) — ``torch.optim.Rprop``; for full batches.

    .. math::
        g_t &\leftarrow \pm g_t,\quad s = g_t\, g_{t-1} \\
        \eta &= \eta_+ \ (s > 0),\quad \eta_- \ (s < 0),\quad 1 \ (s = 0) \\
        \Delta_t &\leftarrow \operatorname{clamp}(\eta\,\Delta_{t-1}, \Delta_{\min}, \Delta_{\max})
            \qquad (\Delta_0 = \gamma) \\
        g_t &\leftarrow 0 \text{ where } s < 0,\quad
            \theta_t \leftarrow \theta_{t-1} - \operatorname{sign}(g_t)\,\Delta_t

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: learning rate γ, the initial step size Δ₀, >= 0 (default 1e-2).
        etas: (η₋, η₊), with 0 < η₋ < 1 < η₊ (default (0.5, 1.2)).
        step_sizes: (Δmin, Δmax), with 0 <= Δmin <= Δmax (default (1e-6, 50.0)).
        maximize: ascend the objective instead of descending (default False).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    State per parameter: ``prev``, ``step_size``.

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Rprop([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    _rule = "rprop"

    def __init__(self, params: Any, lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0), *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize), **options)

    def _check_relations(self, group: Mapping[str, Any]) -> None:
        low, high = group["step_sizes"]
        check_real("step_sizes[1]", high, low=float(low))
