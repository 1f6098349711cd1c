"""The optimizers the demo compares, with the settings it uses for each.

fastoptim's classes are looked up by name, so an optimizer this build lacks is reported as
unavailable instead of breaking the import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fastoptim

__all__ = ["OPTIMIZERS", "OptimizerSpec"]


@dataclass(frozen=True)
class OptimizerSpec:
    """One row of the comparison: ``fastoptim.<class_name>(params, lr=..., **kwargs)``."""

    key: str          # the name on the command line
    class_name: str   # the fastoptim attribute, also the short name
    label: str        # the name, with the settings, in the table and the plots
    lr: float         # the learning rate for the MLP (peak of the warmup-cosine schedule)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Schedule-Free: no learning-rate schedule (its own warmup instead), and the parameters
    # switched to the average for evaluation (opt.eval(), then opt.train())
    schedule_free: bool = False

    @property
    def name(self) -> str:
        return self.class_name

    @property
    def available(self) -> bool:
        return hasattr(fastoptim, self.class_name)

    def build(self, params: Any, lr: float, **overrides: Any) -> Any:
        """The optimizer over `params` (fastoptim must have the class: check `available`)."""
        cls = getattr(fastoptim, self.class_name)
        return cls(params, lr=lr, **{**self.kwargs, **overrides})


OPTIMIZERS: dict[str, OptimizerSpec] = {spec.key: spec for spec in (
    OptimizerSpec("sgd", "SGD", "SGD (Nesterov 0.9)", 0.05, {"momentum": 0.9, "nesterov": True}),
    OptimizerSpec("adam", "Adam", "Adam", 3e-3),
    OptimizerSpec("adamw", "AdamW", "AdamW (wd 0.05)", 3e-3, {"weight_decay": 0.05}),
    OptimizerSpec("radam", "RAdam", "RAdam", 3e-3),
    OptimizerSpec("sfadamw", "ScheduleFreeAdamW", "Schedule-Free AdamW (wd 0.05)", 1e-2, {"weight_decay": 0.05},
                  schedule_free=True),
    OptimizerSpec("lion", "Lion", "Lion (wd 0.1)", 3e-4, {"weight_decay": 0.1}),
    OptimizerSpec("ranger", "Ranger", "Ranger", 1e-2),
)}
