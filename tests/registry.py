"""Every optimizer under test, with its argument sets, its reference and its torch twin.

A new rule joins every shared test (reference, torch parity, bits, zero copy, state dict,
bad input) by adding one row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import fastoptim as fo
import reference


@dataclass(frozen=True)
class Case:
    name: str
    cls: type
    reference: Callable[..., None]
    arg_sets: list[dict[str, Any]]
    random_args: Callable[[np.random.Generator], dict[str, Any]]
    torch_name: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # torch's defaults, for the reference

    def hyper(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The full hyper-parameter dict a group gets from `kwargs`."""
        opt = self.cls([np.zeros(1)], **kwargs)
        return {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "param_names")}

    def __repr__(self) -> str:
        return self.name


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _random_sgd(rng: np.random.Generator) -> dict[str, Any]:
    momentum = [0.0, _u(rng, 0.5, 0.99)][rng.integers(2)]
    nesterov = bool(momentum and rng.integers(2))
    return dict(lr=_u(rng, 1e-3, 0.1), momentum=momentum, dampening=0.0 if nesterov else _u(rng, 0, 0.5),
                weight_decay=[0.0, _u(rng, 1e-4, 1e-1)][rng.integers(2)], nesterov=nesterov,
                maximize=bool(rng.integers(2)))


def _random_adam(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=(_u(rng, 0.5, 0.99), _u(rng, 0.9, 0.9999)), eps=10 ** _u(rng, -10, -6),
                weight_decay=[0.0, _u(rng, 1e-4, 1e-1)][rng.integers(2)], amsgrad=bool(rng.integers(2)),
                maximize=bool(rng.integers(2)))


CASES = [
    Case("sgd", fo.SGD, reference.sgd,
         [dict(lr=0.05), dict(lr=0.05, momentum=0.9), dict(lr=0.02, momentum=0.9, dampening=0.3, weight_decay=0.01),
          dict(lr=0.02, momentum=0.8, nesterov=True, maximize=True)],
         _random_sgd, "SGD"),
    Case("adam", fo.Adam, reference.adam,
         [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, amsgrad=True), dict(lr=3e-3, betas=(0.8, 0.99), maximize=True),
          dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)],
         _random_adam, "Adam"),
    Case("adamw", fo.AdamW, reference.adam,
         [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, amsgrad=True)],
         _random_adam, "AdamW"),
]

ARG_CASES = [(case, kwargs) for case in CASES for kwargs in case.arg_sets]


def arg_id(value: Any) -> str:
    if isinstance(value, Case):
        return value.name
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)
