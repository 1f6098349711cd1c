"""What every optimizer's step does with the gradients besides the update: the options every
optimizer takes (``max_grad_norm``, ``skip_nonfinite``, torch's ``foreach``/``fused``/
``capturable``/``differentiable``), ``step``'s ``grad_scale``, and the :class:`StepInfo` it
returns. One home for their checks, shared by the optimizers, Lookahead and the distributed
wrappers."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ._validation import check_bool, check_real

__all__ = ["StepInfo", "StepOptions", "check_ema_decay", "check_grad_scale", "check_max_grad_norm", "read_step_options"]


class StepInfo(NamedTuple):
    """What a step did.

    ``grad_norm``: the global 2-norm of the gradients the step used (after ``grad_scale``,
    before clipping), or None when no option needed it. ``skipped``: with ``skip_nonfinite``,
    a gradient held a NaN or an infinity, and the step changed nothing. ``loss`` (not a field):
    the first loss the step's closure returned (LBFGS), else None.
    """

    grad_norm: float | None
    skipped: bool

    @property
    def loss(self) -> float | None:
        return None


class ClosureStepInfo(StepInfo):
    """The StepInfo of a step that evaluates a closure: still the pair (grad_norm, skipped), with
    ``loss``, the closure's first loss, beside it."""

    def __new__(cls, loss: float | None) -> ClosureStepInfo:
        info = super().__new__(cls, None, False)
        info.__dict__["first_loss"] = loss
        return info

    def __getnewargs__(self) -> tuple[float | None]:
        return (self.loss,)

    @property
    def loss(self) -> float | None:
        return self.__dict__.get("first_loss")  # None on a copy made by _replace, which skips __new__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(grad_norm=None, skipped=False, loss={self.loss!r})"


NOTHING_MEASURED = StepInfo(None, False)  # the default step's result, shared (a tuple: immutable)

_TORCH_ONLY = {
    "capturable": "capturable=True keeps torch's step counts on an accelerator for CUDA graph capture; "
                  "fastoptim steps NumPy arrays on the CPU and has nothing to capture",
    "differentiable": "differentiable=True lets autograd differentiate through torch's step; fastoptim's step "
                      "runs in native code outside any autograd graph",
}


_FLOAT32 = np.finfo(np.float32)


def is_plus_infinity(value: Any) -> bool:
    """``math.inf``, ``np.inf`` or a NumPy float holding +inf (a bool is not a number here)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and float(value) == math.inf)


def check_max_grad_norm(value: Any, name: str = "max_grad_norm") -> float | None:
    """None (no clipping), or the largest global 2-norm, >= 0; infinity measures the norm
    without clipping."""
    if value is None:
        return None
    if is_plus_infinity(value):
        return math.inf
    return check_real(name, value, low=0.0)


def check_grad_scale(value: Any) -> float:
    """1 / grad_scale, the factor each gradient is read with; 1.0 for None. The factor must be
    a normal float32 (float32 gradients read it in float32): a scale between about 3e-38 and
    8e37, far beyond any loss scale in use."""
    if value is None:
        return 1.0
    scale = check_real("grad_scale", value, low=0.0, low_open=True)
    inverse = 1.0 / scale
    if not float(_FLOAT32.tiny) <= inverse <= float(_FLOAT32.max):
        raise ValueError(f"grad_scale must have a reciprocal that float32 holds (a scale from about "
                         f"{1 / float(_FLOAT32.max):.3g} to {1 / float(_FLOAT32.tiny):.3g}), got {scale!r}")
    return inverse


class StepOptions(NamedTuple):
    """The keyword options every optimizer takes, checked."""

    max_grad_norm: float | None
    skip_nonfinite: bool
    ema_decay: float | None
    ema_warmup: bool


def check_ema_decay(value: Any) -> float | None:
    """None (no EMA of the weights) or a decay in [0, 1]."""
    return None if value is None else check_real("ema_decay", value, low=0.0, high=1.0)


# The state's options (and bfloat16 parameters' rounding), read by _state_format.
_STATE_LAYOUT = ("state_dtype", "state_rounding", "seed", "min_8bit_size", "stochastic_rounding")


def read_step_options(owner: str, options: Mapping[str, Any]) -> StepOptions:
    """The step options from an optimizer's keyword options, every one checked:
    ``foreach`` and ``fused`` are accepted (None/False/True) and ignored, since every step is
    one fused native call; ``capturable=True`` and ``differentiable=True`` are refused."""
    for key, value in options.items():
        if key in ("foreach", "fused"):
            if value is not None:
                check_bool(key, value)
        elif key in _TORCH_ONLY:
            if value is not None and check_bool(key, value):
                raise ValueError(f"{_TORCH_ONLY[key]}; pass {key}=False or leave it out")
        elif key not in StepOptions._fields and key not in _STATE_LAYOUT:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
    ema_decay = check_ema_decay(options.get("ema_decay"))
    ema_warmup = check_bool("ema_warmup", options.get("ema_warmup", False))
    if ema_warmup and ema_decay is None:
        raise ValueError("ema_warmup=True needs ema_decay (the EMA it warms up)")
    return StepOptions(check_max_grad_norm(options.get("max_grad_norm")),
                       check_bool("skip_nonfinite", options.get("skip_nonfinite", False)), ema_decay, ema_warmup)


def clip_coefficient(max_norm: float | None, norm: float) -> float:
    """torch's clip_grad_norm_ coefficient: max_norm / (norm + 1e-6), clamped to 1 (a NaN passes
    through, as torch's clamp lets it); 1 without clipping or with ``inf``."""
    if max_norm is None or max_norm == math.inf:
        return 1.0
    coefficient = max_norm / (norm + 1e-6)
    return coefficient if coefficient < 1.0 or math.isnan(coefficient) else 1.0
