"""The rules benchmarked, with the bytes each step must move.

:data:`RULES` names each configuration the benchmark can run: the fastoptim class and keyword
arguments every peer gets, the NumPy peer's class, the torch.optim and DeepSpeed twins where
they exist, and ``passes``, the arrays a step reads and writes, from which the bandwidth probe
sweeps the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastoptim as fo

from .numpy_peer import (
    Array,
    NpAdaBound,
    NpAdadelta,
    NpAdagrad,
    NpAdam,
    NpAdamax,
    NpAdamW,
    NpLAMB,
    NpLARS,
    NpLion,
    NpNAdam,
    NpRAdam,
    NpRMSprop,
    NpRprop,
    NpSGD,
    NumpyOptimizer,
)


@dataclass(frozen=True)
class Rule:
    """One benchmarked configuration: the same keyword arguments go to every peer."""

    name: str
    fo_class: str
    kwargs: dict[str, Any]
    numpy_class: type[NumpyOptimizer]
    passes: tuple[tuple[int, int], ...]  # (arrays read, arrays written) per sweep over the elements
    torch_class: str | None = None
    deepspeed_adamw: bool | None = None  # DeepSpeedCPUAdam's mode, None where it has no twin
    steady_after: int = 0  # steps before the steady state (RAdam rectifies from step 6)

    def make_fastoptim(self, params: list[Array]) -> Any:
        return getattr(fo, self.fo_class)(params, **self.kwargs)

    def hyper(self) -> dict[str, Any]:
        """Every hyper-parameter with fastoptim's defaults filled in (what the NumPy peer gets)."""
        group = self.make_fastoptim([np.zeros(1)]).param_groups[0]
        return {k: v for k, v in group.items() if k not in ("params", "param_names")}

    @property
    def bytes_per_element(self) -> int:
        """Bytes per float32 element (double for float64)."""
        return 4 * sum(r + w for r, w in self.passes)


ADAM_LIKE = ((4, 3),)
RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("sgd", "SGD", dict(lr=1e-3), NpSGD, ((2, 1),), "SGD"),
    Rule("sgd_momentum", "SGD", dict(lr=1e-3, momentum=0.9), NpSGD, ((3, 2),), "SGD"),
    Rule("adam", "Adam", dict(lr=1e-3), NpAdam, ADAM_LIKE, "Adam", deepspeed_adamw=False),
    Rule("adamw", "AdamW", dict(lr=1e-3, weight_decay=1e-2), NpAdamW, ADAM_LIKE, "AdamW", deepspeed_adamw=True),
    Rule("amsgrad", "Adam", dict(lr=1e-3, amsgrad=True), NpAdam, ((5, 4),), "Adam"),
    Rule("adagrad", "Adagrad", dict(lr=1e-2), NpAdagrad, ((3, 2),), "Adagrad"),
    Rule("adadelta", "Adadelta", dict(lr=1.0), NpAdadelta, ADAM_LIKE, "Adadelta"),
    Rule("rmsprop", "RMSprop", dict(lr=1e-2), NpRMSprop, ((3, 2),), "RMSprop"),
    Rule("rprop", "Rprop", dict(lr=1e-2), NpRprop, ADAM_LIKE, "Rprop"),
    Rule("adamax", "Adamax", dict(lr=2e-3), NpAdamax, ADAM_LIKE, "Adamax"),
    Rule("nadam", "NAdam", dict(lr=2e-3), NpNAdam, ADAM_LIKE, "NAdam"),
    Rule("radam", "RAdam", dict(lr=1e-3), NpRAdam, ADAM_LIKE, "RAdam", steady_after=5),
    Rule("adabound", "AdaBound", dict(lr=1e-3), NpAdaBound, ADAM_LIKE),
    Rule("lamb", "LAMB", dict(lr=1e-3), NpLAMB, ((4, 2), (3, 1))),
    Rule("lars", "LARS", dict(lr=1.0), NpLARS, ((2, 0), (3, 2))),
    Rule("lion", "Lion", dict(lr=1e-4), NpLion, ((3, 2),)),
]}


def numpy_optimizer(rule: str, params: Sequence[Array]) -> NumpyOptimizer:
    """The NumPy peer of `rule` (a key of :data:`RULES`) over `params`, updated in place."""
    spec = RULES[rule]
    return spec.numpy_class(params, spec.hyper())
