"""The base of both distributed optimizers: their clip norm, the gradient check every rank makes
before any message is sent, and the refusal to be copied."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from .. import _core
from ._common import check_options, refuse_copy, step_header

__all__ = ["DistributedBase"]


class DistributedBase:
    """What DistributedOptimizer and ZeroRedundancyOptimizer set in their constructors."""

    comm: Any
    _names: list[Hashable]
    _params: list[np.ndarray]
    _max_grad_norm: float | None

    @property
    def max_grad_norm(self) -> float | None:
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self._max_grad_norm = check_options(value, 1, "rank_order", None)[0]

    def _checked_grads(self, grads: Any, action: str, *, writable: bool) -> list[np.ndarray]:
        """Collective, once a step: `grads` in parameter order, checked by the step's own native
        check on every rank before any message is sent (if one rank's are refused, every rank
        raises), and the ranks' clip norms compared."""
        error: BaseException | None = None
        ordered: list[np.ndarray] = []
        try:
            ordered = _core.check_grads(grads, self._names, self._params, writable)
        except (TypeError, ValueError) as caught:
            error = caught
        step_header(self.comm, error, self._max_grad_norm, action)
        return ordered

    def __getstate__(self) -> dict[str, Any]:
        refuse_copy(self)
        return {}
