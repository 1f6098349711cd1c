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
    # keyword arguments that are learning rates too (MuonWithAdamW's adamw_lr, its other half's):
    # scaled by lr / self.lr, so --lr x0.5 or NAME=LR move all of the optimizer's rates together
    scaled_with_lr: tuple[str, ...] = ()
    # what the demo can ask of an optimizer that this one cannot do, each with the reason:
    # "ema" (ema_decay, evaluated with swap_ema), "state_dtype", "bfloat16" (bfloat16 weights),
    # "landscape" (the 2-D paths). `fastoptim demo` runs it without the first two, saying so, and
    # skips it (default list) or refuses it (named in --optimizers) for the last two.
    cannot: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.class_name

    @property
    def available(self) -> bool:
        return hasattr(fastoptim, self.class_name)

    def build(self, params: Any, lr: float, **overrides: Any) -> Any:
        """The optimizer over `params` (fastoptim must have the class: check `available`)."""
        cls = getattr(fastoptim, self.class_name)
        kwargs = {**self.kwargs, **{name: self.kwargs[name] * lr / self.lr for name in self.scaled_with_lr}}
        return cls(params, lr=lr, **{**kwargs, **overrides})


OPTIMIZERS: dict[str, OptimizerSpec] = {spec.key: spec for spec in (
    OptimizerSpec("sgd", "SGD", "SGD (Nesterov 0.9)", 0.05, {"momentum": 0.9, "nesterov": True}),
    OptimizerSpec("adam", "Adam", "Adam", 3e-3),
    OptimizerSpec("adamw", "AdamW", "AdamW (wd 0.05)", 3e-3, {"weight_decay": 0.05}),
    OptimizerSpec("radam", "RAdam", "RAdam", 3e-3),
    OptimizerSpec("sfadamw", "ScheduleFreeAdamW", "Schedule-Free AdamW (wd 0.05)", 1e-2, {"weight_decay": 0.05},
                  schedule_free=True),
    OptimizerSpec("lion", "Lion", "Lion (wd 0.1)", 3e-4, {"weight_decay": 0.1}),
    OptimizerSpec("ranger", "Ranger", "Ranger", 1e-2),
    # Muon on the MLP's weight matrices (W0, W1, W2: fastoptim.split_for_muon), AdamW on its
    # biases with the AdamW row's settings (lr 3e-3, which follows Muon's lr, and wd 0.05); one
    # warmup-cosine schedule drives both halves' groups. MuonWithAdamW is no fastoptim.Optimizer:
    # it has no ema_decay or swap_ema, no state_dtype and no bfloat16 weights (it refuses them),
    # so the demo trains it without them and says so.
    OptimizerSpec("muon", "MuonWithAdamW", "Muon (wd 0.1) + AdamW", 0.02,
                  {"momentum": 0.95, "weight_decay": 0.1, "adamw_lr": 3e-3, "adamw_weight_decay": 0.05},
                  scaled_with_lr=("adamw_lr",),
                  cannot={"ema": "MuonWithAdamW keeps no EMA of the weights (no ema_decay, no swap_ema)",
                          "state_dtype": "Muon keeps its momentum in the weights' dtype (no state_dtype)",
                          "bfloat16": "Muon steps float32 and float64 weights only",
                          "landscape": "Muon orthogonalizes 2-D weight matrices, and a surface's point is "
                                       "one 2-vector"}),
)}
