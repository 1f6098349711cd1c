"""The base of both distributed optimizers: their clip norm, the gradient check every rank makes
before any message is sent, and the refusal to be copied."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._forwarding import forwarded
from .._step_options import StepInfo, check_grad_scale, check_max_grad_norm, clip_coefficient
from .._validation import is_bfloat16_param
from ._common import GradPattern, refuse_copy, step_header
from ._exchange import Exchange, GradMeasure
from ._signature import core_of

__all__ = ["DistributedBase"]


class DistributedBase:
    """What DistributedOptimizer and ZeroRedundancyOptimizer set in their constructors."""

    comm: Any
    optimizer: Any  # the optimizer that steps: the wrapped one, or ZeRO's local one
    _names: list[Hashable]
    _params: list[np.ndarray]
    _max_grad_norm: float | None
    _exchange: Exchange
    grad_norm: float | None

    @staticmethod
    def _refuse_bfloat16(names: Sequence[Hashable], params: Sequence[np.ndarray], what: str) -> None:
        """The exchanges reduce float32 and float64 gradients only (MPI has no bfloat16). Raised
        through raise_together, so every rank raises even where only one holds such a parameter."""
        for name, param in zip(names, params):
            if is_bfloat16_param(param):
                raise TypeError(f"{what}: params[{name!r}] is bfloat16; the distributed optimizers exchange float32 "
                                "and float64 gradients only (MPI has no bfloat16): step bfloat16 parameters with a "
                                "single-process optimizer")

    @property
    def max_grad_norm(self) -> float | None:
        """Clip the averaged gradients to this global 2-norm (None: no clipping; ``math.inf``:
        measure only). It may be set here or on the optimizer, never on both."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        checked = check_max_grad_norm(value)
        if checked is not None and self.optimizer.max_grad_norm is not None:
            raise ValueError(self._both_set(checked))
        self._max_grad_norm = checked

    skip_nonfinite = forwarded("skip_nonfinite", "The optimizer's skip of a step with a NaN or an infinity in its "
                               "gradients; every rank skips alike (set it alike on every rank).", settable=True)

    def _both_set(self, mine: float) -> str:
        return (f"max_grad_norm is set both on {type(self).__name__} ({mine!r}) and on its optimizer "
                f"({self.optimizer.max_grad_norm!r}); set it on one of them (both clip the global norm over "
                "every rank)")

    def _clip_norm(self) -> float | None:
        """The clip norm of this step: the wrapper's or the optimizer's (ValueError if both)."""
        inner = self.optimizer.max_grad_norm
        if self._max_grad_norm is not None and inner is not None:
            raise ValueError(self._both_set(self._max_grad_norm))
        return self._max_grad_norm if inner is None else inner

    def _checked_grads(self, grads: Any, action: str, grad_scale: Any, *, writable: bool,
                       touched: Sequence[int] | None = None,
                       local_check: Callable[[list[np.ndarray | None] | None], None] | None = None) -> tuple[
            list[np.ndarray | None], float, float | None]:
        """Collective, once a step: `grads` in parameter order (None where a gradient is None; an
        empty list for a step on accumulated gradients only), checked by the step's own native
        check on every rank before any message is sent (if one rank's are refused, or its
        grad_scale or clip settings, every rank raises), and the ranks' clip norms, skip
        settings and gradient patterns compared: a gradient may be None only on every rank,
        and `touched` (the parameters with accumulated gradients, None when nothing is
        accumulated) must be the same everywhere. `local_check` (given the ordered gradients, or
        None) raises for anything the optimizer's own step would refuse after the first message
        (pending edits, memory the gradients share with it, swap_ema in effect). Returns the
        gradients, 1/grad_scale and the clip norm."""
        error: BaseException | None = None
        ordered: list[np.ndarray | None] = []
        mult, clip = 1.0, None
        try:
            if grads is None and grad_scale is not None:
                raise ValueError("grad_scale applies to the gradients a step is given; pass each micro-batch's to "
                                 "accumulate(grads, grad_scale=...)")
            if grads is None and touched is None:
                raise ValueError("step() without gradients steps on the accumulated ones, and none were accumulated "
                                 "since the last step: call accumulate(grads) first, or pass grads")
            mult = check_grad_scale(grad_scale)
            clip = self._clip_norm()
            if grads is not None:
                ordered = _core.check_grads(grads, self._names, self._params, writable)
            if local_check is not None:
                local_check(ordered if grads is not None else None)
        except (TypeError, ValueError, RuntimeError) as caught:
            error = caught
        absent = tuple(i for i, g in enumerate(ordered) if g is None)
        pattern = GradPattern(grads is not None, touched is not None, absent, tuple(touched or ()))
        step_header(self.comm, error, clip, bool(self.optimizer.skip_nonfinite), action, pattern)
        return ordered, mult, clip

    def _step_measured(self, local_grads: list[np.ndarray | None] | None, mult: float, clip: float | None,
                       measure: GradMeasure) -> StepInfo:
        """The rest of a step whose gradients' parts were added to `measure` on every rank: the
        global norm and verdict (one Allgather), then the optimizer's step on `local_grads`
        (None: on its accumulated ones) with the clip folded into the factor they are read
        with, unless a rank found a NaN or an infinity and the optimizer skips such steps (then
        no rank changes anything but discarding what it accumulated)."""
        norm, finite = self._exchange.global_measure(measure)
        self.grad_norm = norm
        if self.optimizer.skip_nonfinite and not finite:
            if local_grads is None:
                core_of(self.optimizer)._discard_accumulated()
            return StepInfo(norm, True)
        self.optimizer._step(local_grads, mult * clip_coefficient(clip, norm), None, False)
        return StepInfo(norm, False)

    def __getstate__(self) -> dict[str, Any]:
        refuse_copy(self)
        return {}
