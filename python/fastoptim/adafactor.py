"""Adafactor (Shazeer & Stern 2018), as torch.optim.Adafactor implements it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._core import factored_apply, factored_moments, factored_update_sq, variance_apply, variance_moments
from ._per_array import Guard, PerArrayOptimizer
from ._validation import check_bool, check_real

__all__ = ["Adafactor"]


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """torch's ``start.lerp_(end, weight)`` in `start`'s dtype, with torch's two forms, chosen
    and computed from the weight cast to that dtype."""
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        np.subtract(end, (end - start) * (start.dtype.type(1) - w), out=start)


def _inverse_roots(factors: np.ndarray) -> np.ndarray:
    """1/√x of each factor, from float64 (infinite for 0), flat, in the factors' dtype: the
    native passes take 1/√max(r·c, ε₁²) as min(1/√r · 1/√c, 1/ε₁)."""
    with np.errstate(divide="ignore"):
        return (1.0 / np.sqrt(factors.astype(np.float64))).astype(factors.dtype).reshape(-1)


def _inverse(eps1: float) -> float:
    return math.inf if eps1 == 0 else 1.0 / eps1


class Adafactor(PerArrayOptimizer):
    r"""Adafactor: second moments factored into rows and columns (Shazeer & Stern 2018), with
    torch.optim.Adafactor's semantics and defaults (the oracle of the tests).

    With t the parameter's step, ``g`` its gradient (negated with `maximize`), ε₁ = `eps[0]`
    (the dtype's machine epsilon when None) and ε₂ = `eps[1]`::

        β₂ₜ = 1 − t^beta2_decay;   ρₜ = min(lr, 1/√t);   αₜ = max(ε₂, RMS(p)) · ρₜ
        p ← p · (1 − lr·weight_decay)
        ndim ≥ 2 (the last two dimensions factored, the others a batch of matrices):
            R ← β₂ₜ·R + (1 − β₂ₜ)·mean_cols(g²)       (row_var, shape [..., rows, 1])
            C ← β₂ₜ·C + (1 − β₂ₜ)·mean_rows(g²)       (col_var, shape [..., 1, cols])
            v̂ = R·C / max(mean_rows(R), ε₁)
        ndim < 2:
            v̂ = V ← β₂ₜ·V + (1 − β₂ₜ)·g²                (variance, like the parameter)
        u = g / √max(v̂, ε₁²)
        p ← p − αₜ / max(1, RMS(u)/d) · u

    RMS(p) is taken before the weight decay, as torch. With ``eps[0]`` None, ε₁ is each
    parameter's own dtype's epsilon (torch takes the first parameter's for the whole group).
    The state per parameter: ``step`` and ``row_var``/``col_var`` (ndim ≥ 2) or ``variance``:
    for a rows × cols matrix, rows + cols numbers instead of Adam's 2·rows·cols.

    The element-wise passes run in native code over the parameter (for a matrix three reads of
    the gradient, two of the parameter, one write: 24 bytes per float32 element), their sums in fixed lanes
    and blocks, so the bits are the same on every CPU target and thread count. The row and column
    vectors are updated with NumPy in the parameter's dtype.

    Args:
        params: arrays, a dict name -> array, or group dicts (float32 or float64, C order).
        lr: ρₜ's ceiling, and the weight decay's rate (default 1e-2, torch's).
        beta2_decay: the exponent of t in 1 − β₂ₜ, <= 0 (default -0.8).
        eps: (ε₁, ε₂): ε₁ floors the variance (None: the dtype's epsilon), ε₂ the RMS of p
            (default (None, 1e-3)).
        d: the clipping threshold of the update's RMS, >= 1 (default 1.0).
        weight_decay: decoupled, as torch (default 0).
        maximize: ascend the objective instead (default False).
        options: ``max_grad_norm``, ``skip_nonfinite``, ``foreach``/``fused`` (ignored). Refused:
            ``state_dtype`` (the factored state is a few numbers per row: nothing to gain, and
            8-bit blocks do not fit it), ``ema_decay``, ``cautious``, bfloat16 parameters.
    """

    _counts_steps: ClassVar[bool] = True

    def __init__(self, params: Any, lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0, weight_decay: float = 0.0, *,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                                      maximize=maximize), **options)

    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        check_real("lr", group.get("lr"), low=0.0)
        check_real("beta2_decay", group.get("beta2_decay"), high=0.0)
        eps = group.get("eps")
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise TypeError(f"eps must be a pair (eps1, eps2): eps1 floors the variance (None: the dtype's epsilon), "
                            f"eps2 the parameter's RMS; got {eps!r}")
        if eps[0] is not None:
            check_real("eps[0]", eps[0], low=0.0)
        check_real("eps[1]", eps[1], low=0.0)
        check_real("d", group.get("d"), low=1.0)
        check_real("weight_decay", group.get("weight_decay"), low=0.0)
        check_bool("maximize", group.get("maximize"))

    def _new_state(self, param: np.ndarray, group: Mapping[str, Any]) -> dict[str, Any]:
        return {"step": 0, **{k: np.zeros(s, param.dtype) for k, s in self._state_shapes(param).items()}}

    def _state_shapes(self, param: np.ndarray) -> dict[str, tuple[int, ...]]:
        if param.ndim >= 2:
            return {"row_var": param.shape[:-1] + (1,), "col_var": param.shape[:-2] + (1, param.shape[-1])}
        return {"variance": param.shape}

    def _step_array(self, group: Mapping[str, Any], param: np.ndarray, grad: np.ndarray, mult: float,
                    state: dict[str, Any], guards: list[Guard]) -> None:
        step = int(state["step"]) + 1
        if param.size == 0:
            state["step"] = step
            return
        lr, d = float(group["lr"]), float(group["d"])
        eps1 = float(np.finfo(param.dtype).eps) if group["eps"][0] is None else float(group["eps"][0])
        eps2 = float(group["eps"][1])
        weight = step ** float(group["beta2_decay"])  # 1 − β₂ₜ
        rho = min(lr, 1.0 / step ** 0.5)  # torch's arithmetic, to the bit
        decay = 1.0 - lr * float(group["weight_decay"])
        if group["maximize"]:
            mult = -mult
        eps_sq = eps1 * eps1
        factors: tuple[np.ndarray, np.ndarray] | None = None
        if param.ndim >= 2:
            rows, cols = param.shape[-2:]
            row_var, col_var = state["row_var"], state["col_var"]
            rows_sq, cols_sq = np.empty(row_var.size), np.empty(col_var.size)
            param_sq = factored_moments(param, grad, mult, rows_sq, cols_sq, guards)
            lerp_(row_var, (rows_sq / cols).astype(param.dtype).reshape(row_var.shape), weight)
            lerp_(col_var, (cols_sq / rows).astype(param.dtype).reshape(col_var.shape), weight)
            row_scale = np.maximum(row_var.mean(axis=-2, keepdims=True), param.dtype.type(eps1))
            factors = _inverse_roots(row_var / row_scale), _inverse_roots(col_var)
            update_sq = factored_update_sq(param, grad, mult, *factors, _inverse(eps1), guards)
        else:
            param_sq, update_sq = variance_moments(param, grad, mult, state["variance"], weight, eps_sq, guards)
        root_n = param.size ** 0.5
        alpha = max(eps2, math.sqrt(param_sq) / root_n) * rho
        scale = alpha / max(1.0, math.sqrt(update_sq) / (root_n * d))
        if factors is None:
            variance_apply(param, grad, mult, state["variance"], eps_sq, decay, scale, guards)
        else:
            factored_apply(param, grad, mult, *factors, _inverse(eps1), decay, scale, guards)
        state["step"] = step  # last: an array's step is whole or not begun
