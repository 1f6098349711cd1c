"""SparseAdam: Adam that reads and writes only the rows a gradient holds, as torch.optim.SparseAdam."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._rows import RowOptimizer
from ._validation import check_betas, check_bool, check_real

__all__ = ["SparseAdam"]


class SparseAdam(RowOptimizer):
    r"""Lazy Adam for row-sparse gradients (Kingma & Ba 2015, lazily) — ``torch.optim.SparseAdam``,
    its semantics and defaults, the oracle of the tests.

    For each row the gradient holds (a :class:`~fastoptim.RowSparse`, duplicates summed first;
    an array holds every row), with t the parameter's step and g negated with `maximize`::

        m ← m + (g − m)·(1 − β₁)
        v ← v + (g² − v)·(1 − β₂)
        p ← p − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε)

    The other rows, their moments included, are neither read nor written: the work is
    proportional to the rows given (``bench/sparse_rows.py``). Every step given a gradient
    advances the parameter's ``t``, however few rows it holds. Unlike torch, a dense gradient is
    taken (as one holding every row), so a model's dense parameters can share the optimizer.

    Args:
        params: arrays, a dict name -> array, or group dicts (float32 or float64, C order; rows
            along the first dimension).
        lr: learning rate, >= 0 (default 1e-3).
        betas: (β₁, β₂), each in [0, 1) (default (0.9, 0.999)).
        eps: ε, > 0 (default 1e-8).
        maximize: ascend the objective instead (default False).
        options: ``max_grad_norm`` (the norm of the rows given), ``skip_nonfinite``,
            ``foreach``/``fused`` (ignored). Refused: ``state_dtype``, ``ema_decay``, ``cautious``,
            ``accumulate()``, bfloat16 parameters.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` (like the parameter). The bits
    are the same on every CPU target and thread count.
    """

    _rule: ClassVar[str] = "sparse_adam"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, maximize=maximize), **options)

    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        check_real("lr", group.get("lr"), low=0.0)
        check_betas("betas", group.get("betas"))
        check_real("eps", group.get("eps"), low=0.0, low_open=True)  # as torch: a zero row would give 0/0
        check_bool("maximize", group.get("maximize"))

    def _new_state(self, param: np.ndarray, group: Mapping[str, Any]) -> dict[str, Any]:
        return {"step": 0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}

    def _state_shapes(self, param: np.ndarray) -> dict[str, tuple[int, ...]]:
        return {"exp_avg": param.shape, "exp_avg_sq": param.shape}

    def _table(self, group: Mapping[str, Any], state: Mapping[str, Any],
               step: int) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...]]:
        beta1, beta2 = (float(b) for b in group["betas"])
        step_size = float(group["lr"]) * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)  # torch's arithmetic
        return state["exp_avg"], state["exp_avg_sq"], (1 - beta1, 1 - beta2, float(group["eps"]), -step_size)
