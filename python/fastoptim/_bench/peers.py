"""Peers: the implementations timed beside fastoptim, and how each is found and started.

:data:`PEERS` lists them in table order. ``_Env`` finds torch and DeepSpeed, says why a peer
cannot run a rule in a dtype, and builds each peer on its own copies of the starting values
as a :class:`Running`, ready to step.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fastoptim as fo

from .. import _core
from .numpy_peer import Array
from .rules import Rule

PEERS = ("fastoptim", "fastoptim_torch", "numpy", "torch_forloop", "torch_foreach", "torch_fused", "deepspeed",
         "probe")
# what runs unless --peers names others: fastoptim.torch only when asked for (it steps torch's tensors)
DEFAULT_PEERS = tuple(p for p in PEERS if p != "fastoptim_torch")
PEER_TITLES = {"fastoptim": "fastoptim", "fastoptim_torch": "fastoptim.torch", "numpy": "NumPy",
               "torch_forloop": "torch loop", "torch_foreach": "torch foreach", "torch_fused": "torch fused",
               "deepspeed": "DeepSpeed", "probe": "probe"}
_TORCH_VARIANTS = {"torch_forloop": {"foreach": False}, "torch_foreach": {"foreach": True},
                   "torch_fused": {"fused": True}}
# temporaries each peer allocates, in arrays of the workload (beyond its parameters, gradients
# and state): the memory guard's estimate
_EXTRA_ARRAYS = {"fastoptim": 0, "fastoptim_torch": 0, "numpy": 3, "torch_forloop": 3, "torch_foreach": 4,
                 "torch_fused": 0, "deepspeed": 0, "probe": 0}


@dataclass
class Running:
    """A peer ready to step: ``step()`` runs one step; ``params`` are the arrays it updates."""

    step: Callable[[], object]
    params: list[Array] | None
    keep: list[Any] = field(default_factory=list)  # objects that must live as long as the peer
    # fastoptim only: (steps taken, steps its thread backoff ran on one thread) so far
    thread_use: Callable[[], tuple[int, int]] | None = None


class _Env:
    """What the run found: torch, DeepSpeed, notes, and the threads to use."""

    def __init__(self, threads: int, notes: list[str]) -> None:
        self.threads = threads
        self.notes = notes
        self.torch: Any = None
        self.torch_reason = ""
        self.deepspeed_adam: Any = None
        self.deepspeed_reason = ""
        self._torch_checked: dict[tuple[str, str, str], str | None] = {}
        self._torch_threads: int | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def load(self, peers: Sequence[str]) -> None:
        if any(p.startswith("torch") or p in ("deepspeed", "fastoptim_torch") for p in peers):
            if importlib.util.find_spec("torch") is None:
                self.torch_reason = "torch is not installed (pip install torch): no torch.optim peers"
            else:
                self.torch = importlib.import_module("torch")
                self._torch_threads = int(self.torch.get_num_threads())
                self.torch.set_num_threads(self.threads)
        if "deepspeed" in peers:
            if importlib.util.find_spec("deepspeed") is None:
                self.deepspeed_reason = "DeepSpeed is not installed (pip install deepspeed): no DeepSpeedCPUAdam peer"
            elif self.torch is None:
                self.deepspeed_reason = "DeepSpeedCPUAdam needs torch, which is not installed"
            else:
                try:
                    # DeepSpeed's logger writes to the stdout it finds at import: give it stderr,
                    # so its messages do not land in the table.
                    with contextlib.redirect_stdout(sys.stderr):
                        module = importlib.import_module("deepspeed.ops.adam")
                    self.deepspeed_adam = module.DeepSpeedCPUAdam
                except Exception as error:  # noqa: BLE001  (a broken install or op build: skip, say why)
                    self.deepspeed_reason = f"DeepSpeed is installed but DeepSpeedCPUAdam failed to import: {error}"

    def restore(self) -> None:
        """Give torch back the thread count it had."""
        if self.torch is not None and self._torch_threads is not None:
            self.torch.set_num_threads(self._torch_threads)

    def torch_problem(self, rule: Rule, dtype: str, peer: str) -> str | None:
        """Why torch.optim cannot run `peer`'s variant of `rule` in `dtype` (None: it can)."""
        if self.torch is None:
            return self.torch_reason
        if rule.torch_class is None:
            return f"torch.optim has no {rule.fo_class}"
        key = (rule.name, dtype, peer)
        if key not in self._torch_checked:
            torch = self.torch
            variant = _TORCH_VARIANTS[peer]
            cls = getattr(torch.optim, rule.torch_class)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ps = [torch.zeros(3, dtype=getattr(torch, dtype), requires_grad=True) for _ in range(2)]
                    for p in ps:
                        p.grad = torch.ones_like(p)
                    cls(ps, **rule.kwargs, **variant).step()
                self._torch_checked[key] = None
            except TypeError as error:
                option = next(iter(variant))
                self._torch_checked[key] = (f"torch {torch.__version__} has no {option}= for "
                                            f"torch.optim.{rule.torch_class}" if option in str(error) else str(error))
            except Exception as error:  # noqa: BLE001  (e.g. no fused kernel for a dtype)
                self._torch_checked[key] = f"torch.optim.{rule.torch_class}({_kw(variant)}) in {dtype}: {error}"
        return self._torch_checked[key]

    def problem(self, peer: str, rule: Rule, dtype: str) -> str | None:
        """Why `peer` cannot run `rule` in `dtype` here, or None."""
        if peer in ("fastoptim", "fastoptim_torch") and rule.options.get("state_dtype") and dtype == "float64":
            return f"state_dtype={rule.options['state_dtype']!r} is for float32 parameters"
        if peer.startswith("torch_"):
            return self.torch_problem(rule, dtype, peer)
        if peer == "fastoptim_torch":
            if self.torch is None:
                return self.torch_reason
            return None if rule.fo_class in _fastoptim_torch().__all__ else f"fastoptim.torch has no {rule.fo_class}"
        if peer == "deepspeed":
            if self.deepspeed_adam is None:
                return self.deepspeed_reason
            if rule.deepspeed_adamw is None:
                return f"DeepSpeed has no CPU {rule.fo_class} (DeepSpeedCPUAdam is Adam and AdamW)"
            if dtype != "float32":
                return "DeepSpeedCPUAdam steps float32 (and half) parameters, not float64"
        return None

    def build(self, peer: str, rule: Rule, params0: list[Array], grads0: list[Array]) -> Running:
        params = [p.copy() for p in params0]
        grads = [g.copy() for g in grads0]  # each peer its own gradients: no peer reads another's cache
        if peer == "fastoptim":
            opt = rule.make_fastoptim(params)
            if not isinstance(opt, fo.Optimizer):  # a PerArrayOptimizer (Adafactor): no plan, no backoff to count
                return Running(functools.partial(opt.step, grads), params, [opt, grads])

            def thread_use() -> tuple[int, int]:
                plan = getattr(opt, "_plan", None)
                return (plan.steps_done(0), plan.steps_alone) if plan is not None else (0, 0)

            return Running(functools.partial(opt.step, grads), params, [opt, grads], thread_use)
        if peer == "numpy":
            nopt = rule.numpy_class(params, rule.hyper())
            return Running(functools.partial(nopt.step, grads), params, [nopt, grads])
        if peer == "probe":
            del params, grads
            n, dtype = sum(p.size for p in params0), params0[0].dtype
            layout = rule.probe_sweeps(dtype.name)
            arrays = [np.full(n, 0.0, dtype) for _ in range(max(r for r, _, _ in layout))]
            halves = [np.full(n, 0, np.uint16) for _ in range(max(h for _, _, h in layout))]
            sweeps = [(arrays[:r] + halves[:h], w) for r, w, h in layout]
            threads = fo.get_num_threads()

            def probe() -> None:
                for chosen, writes in sweeps:
                    _core.probe(chosen, writes, threads)

            return Running(probe, None, [arrays, halves])
        torch = self.torch
        tensors = [torch.from_numpy(p).requires_grad_() for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        if peer == "fastoptim_torch":  # the same tensors a torch.optim peer steps, each .grad set once
            topt = getattr(_fastoptim_torch(), rule.fo_class)(tensors, **rule.kwargs, **rule.options)
            return Running(topt.step, params, [topt, tensors, grads])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if peer == "deepspeed":
                b = rule.kwargs
                # positional: the mode's keyword is adamw_mode in some releases, adam_w_mode in others
                opt = self.deepspeed_adam(tensors, b["lr"], True, b.get("betas", (0.9, 0.999)), b.get("eps", 1e-8),
                                          b.get("weight_decay", 0.0), False, rule.deepspeed_adamw)
            else:
                opt = getattr(torch.optim, str(rule.torch_class))(tensors, **rule.kwargs, **_TORCH_VARIANTS[peer])
        for w in caught:
            self.note(f"{PEER_TITLES[peer]} ({rule.name}) warned: {w.message}")
        return Running(opt.step, params, [opt, tensors, grads])


def _fastoptim_torch() -> Any:
    return importlib.import_module("fastoptim.torch")


def _kw(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
