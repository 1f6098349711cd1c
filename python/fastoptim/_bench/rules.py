"""The rules benchmarked, with the bytes each step must move.

:data:`RULES` names each configuration the benchmark can run: the fastoptim class and keyword
arguments every peer gets, the NumPy peer's class, the torch.optim and DeepSpeed twins where
they exist. What a step reads and writes, from which the bandwidth probe sweeps the same bytes,
comes from the rule's schema (``passes``), or, for the rules that step each array on its own
(:class:`~fastoptim._per_array.PerArrayOptimizer`: Adafactor), from the rule's ``traffic``.

Adafactor's row is ``matrices=True``: the benchmark steps a size of N elements as a near-square
matrix (:meth:`~fastoptim._bench.workloads.Work.as_matrix`), since its factored path, the one
worth timing, takes 2-D arrays. Its three passes over a matrix read p and g (Σp², the row and
column sums of g²), then g (Σu²), then p and g, writing p: 24 bytes per float32 element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fastoptim as fo

from .._per_array import PerArrayOptimizer
from .numpy_peer import (
    Array,
    NpAdaBound,
    NpAdadelta,
    NpAdafactor,
    NpAdagrad,
    NpAdam,
    NpAdamax,
    NpAdamW,
    NpAdamWCautious,
    NpAdan,
    NpAdEMAMix,
    NpAdEMAMixCautious,
    NpADOPT,
    NpASGD,
    NpLAMB,
    NpLARS,
    NpLion,
    NpLionCautious,
    NpNAdam,
    NpRAdam,
    NpRMSprop,
    NpRprop,
    NpScheduleFreeAdamW,
    NpScheduleFreeSGD,
    NpSGD,
    NpSGDCautious,
    NpSGDW,
    NpSGDWCautious,
    NumpyOptimizer,
)


@dataclass(frozen=True)
class Rule:
    """One benchmarked configuration: the same keyword arguments go to every peer."""

    name: str
    fo_class: str
    kwargs: dict[str, Any]
    numpy_class: type[NumpyOptimizer]
    torch_class: str | None = None
    deepspeed_adamw: bool | None = None  # DeepSpeedCPUAdam's mode, None where it has no twin
    # untimed steps before the steady state: RAdam rectifies from step 6, ASGD (t0=0) averages from
    # step 3; ADOPT, Adan and Schedule-Free take their own first step
    steady_after: int = 0
    # (arrays read, arrays written) per sweep, for a rule without a schema (a PerArrayOptimizer)
    traffic: tuple[tuple[int, int], ...] | None = None
    # steps 2-D arrays: a size of N elements is benchmarked as a near-square matrix
    matrices: bool = False
    # fastoptim's options for its peers only (fastoptim, fastoptim_torch): state_dtype="bfloat16"
    # runs against the others' float32 state, and the probe sweeps bfloat16 state's bytes (the
    # limit of fastoptim's step, and of its ratio to the others')
    options: dict[str, Any] = field(default_factory=dict)

    def make_fastoptim(self, params: list[Array]) -> fo.Optimizer | PerArrayOptimizer:
        cls: type[fo.Optimizer | PerArrayOptimizer] = getattr(fo, self.fo_class)
        return cls(params, **self.kwargs, **self.options)

    def hyper(self) -> dict[str, Any]:
        """Every hyper-parameter with fastoptim's defaults filled in (what the NumPy peer gets)."""
        group = self.make_fastoptim([np.zeros(1, np.float32)]).param_groups[0]
        return {k: v for k, v in group.items() if k not in ("params", "param_names")}

    @property
    def passes(self) -> tuple[tuple[int, int], ...]:
        """(arrays read, arrays written) per sweep over the elements: ``traffic`` where set, else
        from the rule's schema."""
        if self.traffic is not None:
            return self.traffic
        opt = self.make_fastoptim([np.zeros(1, np.float32)])
        if not isinstance(opt, fo.Optimizer):
            raise TypeError(f"{self.name}: {self.fo_class} has no schema; give its Rule a traffic")
        return opt._schema.passes(opt.param_groups[0], opt._rule)

    def probe_sweeps(self, dtype: str) -> tuple[tuple[int, int, int], ...]:
        """What the probe sweeps in place of each pass over `dtype` parameters: (arrays read, of
        which the first are written, 16-bit arrays read and written). With bfloat16 state (float32
        only), a pass reads p and g and writes p at 4 bytes and reads and writes each state slot
        at 2."""
        if self.options.get("state_dtype") != "bfloat16" or dtype != "float32":
            return tuple((r, w, 0) for r, w in self.passes)
        if len(self.passes) != 1:
            raise TypeError(f"{self.name}: bfloat16 state's probe is for one-pass rules")
        (_, writes), = self.passes
        return ((2, 1, writes - 1),)  # each slot the pass writes is a 16-bit array

    def bytes_per_element(self, dtype: str) -> int:
        """Bytes per element of fastoptim's step over `dtype` parameters, and of the probe's sweeps."""
        width = np.dtype(dtype).itemsize
        return sum(width * (r + w) + 4 * halves for r, w, halves in self.probe_sweeps(dtype))


RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("sgd", "SGD", dict(lr=1e-3), NpSGD, "SGD"),
    Rule("sgd_momentum", "SGD", dict(lr=1e-3, momentum=0.9), NpSGD, "SGD"),
    Rule("sgdw", "SGDW", dict(lr=1e-3, momentum=0.9, weight_decay=1e-2), NpSGDW),
    Rule("adam", "Adam", dict(lr=1e-3), NpAdam, "Adam", deepspeed_adamw=False),
    Rule("adamw", "AdamW", dict(lr=1e-3, weight_decay=1e-2), NpAdamW, "AdamW", deepspeed_adamw=True),
    Rule("adamw_bf16_state", "AdamW", dict(lr=1e-3, weight_decay=1e-2), NpAdamW, "AdamW",
         options=dict(state_dtype="bfloat16")),
    Rule("amsgrad", "Adam", dict(lr=1e-3, amsgrad=True), NpAdam, "Adam"),
    Rule("adagrad", "Adagrad", dict(lr=1e-2), NpAdagrad, "Adagrad"),
    Rule("adadelta", "Adadelta", dict(lr=1.0), NpAdadelta, "Adadelta"),
    Rule("rmsprop", "RMSprop", dict(lr=1e-2), NpRMSprop, "RMSprop"),
    Rule("rprop", "Rprop", dict(lr=1e-2), NpRprop, "Rprop"),
    Rule("adamax", "Adamax", dict(lr=2e-3), NpAdamax, "Adamax"),
    Rule("nadam", "NAdam", dict(lr=2e-3), NpNAdam, "NAdam"),
    Rule("radam", "RAdam", dict(lr=1e-3), NpRAdam, "RAdam", steady_after=5),
    Rule("adabound", "AdaBound", dict(lr=1e-3), NpAdaBound),
    Rule("lamb", "LAMB", dict(lr=1e-3), NpLAMB),
    Rule("lars", "LARS", dict(lr=1.0), NpLARS),
    Rule("lion", "Lion", dict(lr=1e-4), NpLion),
    Rule("schedule_free_adamw", "ScheduleFreeAdamW", dict(lr=2.5e-3), NpScheduleFreeAdamW, steady_after=1),
    Rule("schedule_free_sgd", "ScheduleFreeSGD", dict(lr=0.1), NpScheduleFreeSGD, steady_after=1),
    Rule("adopt", "ADOPT", dict(lr=1e-3), NpADOPT, steady_after=1),
    Rule("adan", "Adan", dict(lr=1e-3), NpAdan, steady_after=1),
    Rule("ademamix", "AdEMAMix", dict(lr=1e-3), NpAdEMAMix),
    Rule("asgd", "ASGD", dict(lr=1e-2, t0=0.0), NpASGD, "ASGD", steady_after=2),
    Rule("adamw_cautious", "AdamW", dict(lr=1e-3, weight_decay=1e-2, cautious=True), NpAdamWCautious),
    Rule("sgd_cautious", "SGD", dict(lr=1e-3, momentum=0.9, cautious=True), NpSGDCautious),
    Rule("sgdw_cautious", "SGDW", dict(lr=1e-3, momentum=0.9, weight_decay=1e-2, cautious=True), NpSGDWCautious),
    Rule("lion_cautious", "Lion", dict(lr=1e-4, cautious=True), NpLionCautious),
    Rule("ademamix_cautious", "AdEMAMix", dict(lr=1e-3, cautious=True), NpAdEMAMixCautious),
    Rule("adafactor", "Adafactor", dict(lr=1e-2), NpAdafactor, "Adafactor", traffic=((2, 0), (1, 0), (2, 1)),
         matrices=True),
]}


def numpy_optimizer(rule: str, params: Sequence[Array]) -> NumpyOptimizer:
    """The NumPy peer of `rule` (a key of :data:`RULES`) over `params`, updated in place."""
    spec = RULES[rule]
    return spec.numpy_class(params, spec.hyper())
