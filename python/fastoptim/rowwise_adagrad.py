"""Row-wise Adagrad: one accumulator per row of a parameter, as FBGEMM's embedding optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._rows import RowOptimizer
from ._validation import check_bool, check_real

__all__ = ["RowwiseAdagrad"]


class RowwiseAdagrad(RowOptimizer):
    r"""Adagrad with one accumulator per row — FBGEMM's row-wise Adagrad (the embedding tables'
    optimizer of DLRM and TorchRec), with ``torch.optim.Adagrad``'s hyper-parameters; also
    ``fo.Adagrad(params, ..., rowwise=True)``. The oracle of the tests is a float64 reference
    written from these formulas.

    For each row the gradient holds (a :class:`~fastoptim.RowSparse`, duplicates summed first;
    an array holds every row), with t the parameter's step, g negated with `maximize` and n the
    row's length::

        g ← g + λ·p
        s ← s + (1/n)·Σ g²                   (one s per row)
        p ← p − γ/(1 + (t − 1)·η) · g / (√s + ε)

    Rows the gradient does not hold are neither read nor written. A row is the parameter's first
    dimension (a 1-D parameter has rows of one element, and steps as element-wise Adagrad; a 0-D
    one is one row): for a table of R rows the state is R numbers, not Adagrad's R·n.

    Args:
        params: arrays, a dict name -> array, or group dicts (float32 or float64, C order).
        lr: γ, >= 0 (default 1e-2).
        lr_decay: η, >= 0 (default 0).
        weight_decay: λ, L2 on the rows stepped, >= 0 (default 0).
        initial_accumulator_value: s's start, >= 0 (default 0).
        eps: ε, >= 0 (default 1e-10).
        maximize: ascend the objective instead (default False).
        options: ``max_grad_norm`` (the norm of the rows given), ``skip_nonfinite``,
            ``foreach``/``fused`` (ignored). Refused: ``state_dtype``, ``ema_decay``, ``cautious``,
            ``accumulate()``, bfloat16 parameters.

    State per parameter: ``step`` and ``sum`` (shape ``param.shape[:1]``). A row's mean square
    is summed in fixed lanes: the bits are the same on every CPU target and thread count.
    """

    _rule: ClassVar[str] = "rowwise_adagrad"

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize), **options)

    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            check_real(key, group.get(key), low=0.0)
        check_bool("maximize", group.get("maximize"))

    def _new_state(self, param: np.ndarray, group: Mapping[str, Any]) -> dict[str, Any]:
        return {"step": 0, "sum": np.full(param.shape[:1], group["initial_accumulator_value"], param.dtype)}

    def _state_shapes(self, param: np.ndarray) -> dict[str, tuple[int, ...]]:
        return {"sum": param.shape[:1]}

    def _table(self, group: Mapping[str, Any], state: Mapping[str, Any],
               step: int) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...]]:
        clr = float(group["lr"]) / (1 + (step - 1) * float(group["lr_decay"]))  # torch's arithmetic
        return state["sum"], None, (float(group["weight_decay"]), float(group["eps"]), clr)
