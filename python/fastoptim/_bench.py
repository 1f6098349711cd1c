"""The side-by-side benchmark behind ``python -m fastoptim bench`` (and ``bench/bench.py``).

One optimizer step, timed alone (gradients precomputed), for fastoptim beside its peers, in one
run and ALTERNATING between them: every repeat runs one timed step of each peer in turn (the
order rotates by one each repeat), so drift in clock speed, cache and neighbours hits all alike.
The peers:

* ``fastoptim``: the optimizer under test;
* ``numpy``: a careful NumPy implementation of the same rule (in-place ufuncs with ``out=``,
  preallocated temporaries, scalars folded once per step), checked against fastoptim by the
  tests: a peer, not a straw man;
* ``torch_forloop``, ``torch_foreach``, ``torch_fused``: ``torch.optim`` with ``foreach=False``,
  ``foreach=True`` and ``fused=True``, where torch is installed and has the rule;
* ``deepspeed``: ``DeepSpeedCPUAdam`` (Adam and AdamW, float32), where DeepSpeed is installed;
* ``probe``: the bandwidth probe, ``fastoptim._core.probe``, sweeping the same bytes a step of
  the rule must move (its reads and writes): the limit every kernel is reported against.

Every peer starts from copies of the same parameters and gradients, steps the same elements the
same number of times, and ends compared with fastoptim (``deviation``). Throughput is Gel/s:
1e9 parameter elements per second, from the median step time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

import fastoptim as fo

from . import _core, _omp

__all__ = ["PEERS", "RULES", "main", "numpy_optimizer", "run"]

Array = npt.NDArray[Any]

# ---------------------------------------------------------------------------------------------
# The NumPy peer: every rule written with in-place ufuncs and preallocated temporaries
# ---------------------------------------------------------------------------------------------


class NumpyOptimizer:
    """Base of the NumPy peer: per-array state and two temporaries, allocated once.

    ``_scalars(t)`` folds the step's scalars once; ``_update(i, p, g, k)`` updates array i in
    place using ``self.tmp[i]`` (and ``self.tmp2[i]`` where a rule needs a second one).
    Hyper-parameters have torch's names and fastoptim's defaults; ``maximize`` is not offered.
    """

    slots: tuple[str, ...] = ()
    needs_second_tmp = False

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        self.params = list(params)
        self.hp = hp
        self.t = 0
        self.state: list[dict[str, Array]] = [{s: self._initial(s, p) for s in self._needed()} for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]
        self.tmp2 = [np.empty_like(p) for p in self.params] if self.needs_second_tmp else self.tmp
        wd = float(hp.get("weight_decay", 0.0))
        # g + λp goes to its own buffer, so `tmp` stays free for the rule
        self.l2 = wd if wd and not hp.get("decoupled_weight_decay", False) and self.uses_l2 else 0.0
        self.geff = [np.empty_like(p) for p in self.params] if self.l2 else []

    uses_l2 = True

    def _needed(self) -> tuple[str, ...]:
        return self.slots

    def _initial(self, slot: str, p: Array) -> Array:
        return np.zeros_like(p)

    def _grad(self, i: int, p: Array, g: Array) -> Array:
        if not self.l2:
            return g
        out = self.geff[i]
        np.multiply(p, self.l2, out=out)
        out += g
        return out

    def step(self, grads: Sequence[Array]) -> None:
        self.t += 1
        k = self._scalars(self.t)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            self._update(i, p, self._grad(i, p, g), k)

    def _scalars(self, t: int) -> dict[str, float]:
        return {}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        raise NotImplementedError


def _ema(avg: Array, x: Array, beta: float, tmp: Array) -> None:
    """avg ← β·avg + (1 − β)·x, in place."""
    avg *= beta
    np.multiply(x, 1.0 - beta, out=tmp)
    avg += tmp


def _ema_sq(avg: Array, x: Array, beta: float, tmp: Array) -> None:
    """avg ← β·avg + (1 − β)·x², in place."""
    avg *= beta
    np.multiply(x, x, out=tmp)
    tmp *= 1.0 - beta
    avg += tmp


class NpSGD(NumpyOptimizer):
    slots = ("momentum_buffer",)

    def _needed(self) -> tuple[str, ...]:
        return self.slots if self.hp["momentum"] else ()

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        mu, lr, tmp = self.hp["momentum"], self.hp["lr"], self.tmp[i]
        if mu:
            b = self.state[i]["momentum_buffer"]
            if self.t == 1:
                np.copyto(b, g)
            else:
                b *= mu
                if self.hp["dampening"]:
                    np.multiply(g, 1.0 - self.hp["dampening"], out=tmp)
                    b += tmp
                else:
                    b += g
            if self.hp["nesterov"]:
                np.multiply(b, mu, out=tmp)
                tmp += g
                g = tmp
            else:
                g = b
        np.multiply(g, lr, out=tmp)
        p -= tmp


class NpAdam(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _needed(self) -> tuple[str, ...]:
        return self.slots if self.hp["amsgrad"] else self.slots[:2]

    def _scalars(self, t: int) -> dict[str, float]:
        b1, b2 = self.hp["betas"]
        # lr/(1-β1ᵗ) · m / (sqrt(v)/sqrt(1-β2ᵗ) + ε) = step · m / (sqrt(v) + ε·sqrt(1-β2ᵗ)): one pass fewer
        sqrt_bias2 = math.sqrt(1 - b2**t)
        return {"step": self.hp["lr"] * sqrt_bias2 / (1 - b1**t), "eps": self.hp["eps"] * sqrt_bias2}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp = self.hp["betas"], self.state[i], self.tmp[i]
        if self.hp.get("decoupled_weight_decay") and self.hp["weight_decay"]:
            p *= 1 - self.hp["lr"] * self.hp["weight_decay"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _ema(m, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        if self.hp["amsgrad"]:
            v = np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
        np.sqrt(v, out=tmp)  # denominator, then the step
        tmp += k["eps"]
        np.divide(m, tmp, out=tmp)
        tmp *= k["step"]
        p -= tmp


class NpAdamW(NpAdam):
    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, {**hp, "decoupled_weight_decay": True})


class NpAdagrad(NumpyOptimizer):
    slots = ("sum",)

    def _initial(self, slot: str, p: Array) -> Array:
        return np.full_like(p, self.hp["initial_accumulator_value"])

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        s, tmp = self.state[i]["sum"], self.tmp[i]
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.hp["eps"]
        np.divide(g, tmp, out=tmp)
        tmp *= self.hp["lr"] / (1 + (self.t - 1) * self.hp["lr_decay"])
        p -= tmp


class NpAdadelta(NumpyOptimizer):
    slots = ("square_avg", "acc_delta")
    needs_second_tmp = True

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        rho, eps, st = self.hp["rho"], self.hp["eps"], self.state[i]
        s, u, tmp, tmp2 = st["square_avg"], st["acc_delta"], self.tmp[i], self.tmp2[i]
        _ema_sq(s, g, rho, tmp)
        np.add(s, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(u, eps, out=tmp2)
        np.sqrt(tmp2, out=tmp2)
        np.divide(tmp2, tmp, out=tmp)
        tmp *= g  # delta
        _ema_sq(u, tmp, rho, tmp2)
        tmp *= self.hp["lr"]
        p -= tmp


class NpRMSprop(NumpyOptimizer):
    slots = ("square_avg", "momentum_buffer", "grad_avg")

    def _needed(self) -> tuple[str, ...]:
        return ("square_avg",) + (("momentum_buffer",) if self.hp["momentum"] else ()) + (
            ("grad_avg",) if self.hp["centered"] else ())

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        alpha, st, tmp = self.hp["alpha"], self.state[i], self.tmp[i]
        s = st["square_avg"]
        _ema_sq(s, g, alpha, tmp)
        if self.hp["centered"]:
            avg = st["grad_avg"]
            _ema(avg, g, alpha, tmp)
            np.multiply(avg, avg, out=tmp)
            np.subtract(s, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(s, out=tmp)
        tmp += self.hp["eps"]
        np.divide(g, tmp, out=tmp)
        if self.hp["momentum"]:
            b = st["momentum_buffer"]
            b *= self.hp["momentum"]
            b += tmp
            np.multiply(b, self.hp["lr"], out=tmp)
        else:
            tmp *= self.hp["lr"]
        p -= tmp


class NpRprop(NumpyOptimizer):
    slots = ("prev", "step_size")
    uses_l2 = False

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        self.up = [np.empty(p.shape, bool) for p in self.params]
        self.down = [np.empty(p.shape, bool) for p in self.params]

    def _initial(self, slot: str, p: Array) -> Array:
        return np.full_like(p, self.hp["lr"]) if slot == "step_size" else np.zeros_like(p)

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (eta_minus, eta_plus), (low, high) = self.hp["etas"], self.hp["step_sizes"]
        prev, step, tmp = self.state[i]["prev"], self.state[i]["step_size"], self.tmp[i]
        up, down = self.up[i], self.down[i]
        np.multiply(g, prev, out=tmp)
        np.greater(tmp, 0, out=up)
        np.less(tmp, 0, out=down)
        np.multiply(step, eta_plus, out=step, where=up)
        np.multiply(step, eta_minus, out=step, where=down)
        np.clip(step, low, high, out=step)
        np.copyto(prev, g)
        np.copyto(prev, 0, where=down)
        np.sign(prev, out=tmp)
        tmp *= step
        p -= tmp


class NpAdamax(NumpyOptimizer):
    slots = ("exp_avg", "exp_inf")

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp = self.hp["betas"], self.state[i], self.tmp[i]
        m, u = st["exp_avg"], st["exp_inf"]
        _ema(m, g, b1, tmp)
        np.abs(g, out=tmp)
        tmp += self.hp["eps"]
        u *= b2
        np.maximum(u, tmp, out=u)
        np.divide(m, u, out=tmp)
        tmp *= self.hp["lr"] / (1 - b1**self.t)
        p -= tmp


class NpNAdam(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq")
    needs_second_tmp = True

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        self.mu_product = 1.0

    def _scalars(self, t: int) -> dict[str, float]:
        lr, (b1, b2), psi = self.hp["lr"], self.hp["betas"], self.hp["momentum_decay"]
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        self.mu_product *= mu
        return {"grad_step": lr * (1 - mu) / (1 - self.mu_product),
                "avg_step": lr * mu_next / (1 - self.mu_product * mu_next),
                "inv_sqrt_bias2": 1 / math.sqrt(1 - b2**t)}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp, tmp2 = self.hp["betas"], self.state[i], self.tmp[i], self.tmp2[i]
        if self.hp["decoupled_weight_decay"] and self.hp["weight_decay"]:
            p *= 1 - self.hp["lr"] * self.hp["weight_decay"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _ema(m, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        np.sqrt(v, out=tmp)  # d
        tmp *= k["inv_sqrt_bias2"]
        tmp += self.hp["eps"]
        np.multiply(m, k["avg_step"], out=tmp2)  # grad_step·g + avg_step·m, then / d
        p -= np.divide(tmp2, tmp, out=tmp2)
        np.multiply(g, k["grad_step"], out=tmp2)
        p -= np.divide(tmp2, tmp, out=tmp2)


class NpRAdam(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq")

    def _scalars(self, t: int) -> dict[str, float]:
        lr, (b1, b2) = self.hp["lr"], self.hp["betas"]
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            return {"rectified": 1.0, "step": lr * r * math.sqrt(1 - b2**t) / (1 - b1**t)}
        return {"rectified": 0.0, "step": lr / (1 - b1**t)}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp = self.hp["betas"], self.state[i], self.tmp[i]
        if self.hp["decoupled_weight_decay"] and self.hp["weight_decay"]:
            p *= 1 - self.hp["lr"] * self.hp["weight_decay"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _ema(m, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        if k["rectified"]:
            np.sqrt(v, out=tmp)
            tmp += self.hp["eps"]
            np.divide(m, tmp, out=tmp)
            tmp *= k["step"]
        else:
            np.multiply(m, k["step"], out=tmp)
        p -= tmp


class NpAdaBound(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _needed(self) -> tuple[str, ...]:
        return self.slots if self.hp["amsbound"] else self.slots[:2]

    def _scalars(self, t: int) -> dict[str, float]:
        lr, (b1, b2), gamma = self.hp["lr"], self.hp["betas"], self.hp["gamma"]
        final = self.hp["final_lr"] * lr / self.hp.get("initial_lr", lr)
        return {"lower": final * (1 - 1 / (gamma * t + 1)), "upper": final * (1 + 1 / (gamma * t)),
                "step": lr * math.sqrt(1 - b2**t) / (1 - b1**t)}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp = self.hp["betas"], self.state[i], self.tmp[i]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _ema(m, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        if self.hp["amsbound"]:
            v = np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
        np.sqrt(v, out=tmp)
        tmp += self.hp["eps"]
        np.divide(k["step"], tmp, out=tmp)
        np.clip(tmp, k["lower"], k["upper"], out=tmp)
        tmp *= m
        p -= tmp


def _norm(x: Array) -> float:
    flat = x.reshape(-1)
    return math.sqrt(float(np.dot(flat, flat)))


class NpLAMB(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq")
    needs_second_tmp = True
    uses_l2 = False

    def _scalars(self, t: int) -> dict[str, float]:
        b1, b2 = self.hp["betas"]
        return {"inv_bias1": 1 / (1 - b1**t), "inv_bias2": 1 / (1 - b2**t)}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), st, tmp, tmp2 = self.hp["betas"], self.state[i], self.tmp[i], self.tmp2[i]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _ema(m, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        np.multiply(v, k["inv_bias2"], out=tmp)  # r = m̂ / (sqrt(v̂) + ε) + λp
        np.sqrt(tmp, out=tmp)
        tmp += self.hp["eps"]
        np.divide(m, tmp, out=tmp)
        tmp *= k["inv_bias1"]
        if self.hp["weight_decay"]:
            np.multiply(p, self.hp["weight_decay"], out=tmp2)
            tmp += tmp2
        p_norm, r_norm = _norm(p), _norm(tmp)
        trust = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
        tmp *= self.hp["lr"] * trust
        p -= tmp


class NpLARS(NumpyOptimizer):
    slots = ("momentum_buffer",)
    uses_l2 = False

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        wd, tmp, v = self.hp["weight_decay"], self.tmp[i], self.state[i]["momentum_buffer"]
        w_norm, g_norm = _norm(p), _norm(g)
        local = (self.hp["trust_coefficient"] * w_norm / (g_norm + wd * w_norm) if w_norm > 0 and g_norm > 0
                 else 1.0)
        if wd:
            np.multiply(p, wd, out=tmp)
            tmp += g
            tmp *= self.hp["lr"] * local
        else:
            np.multiply(g, self.hp["lr"] * local, out=tmp)
        v *= self.hp["momentum"]
        v += tmp
        p -= v


class NpLion(NumpyOptimizer):
    slots = ("exp_avg",)
    needs_second_tmp = True
    uses_l2 = False

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        (b1, b2), lr, wd = self.hp["betas"], self.hp["lr"], self.hp["weight_decay"]
        m, tmp, tmp2 = self.state[i]["exp_avg"], self.tmp[i], self.tmp2[i]
        np.multiply(m, b1, out=tmp)  # sign(β1·m + (1 − β1)·g)
        np.multiply(g, 1 - b1, out=tmp2)
        tmp += tmp2
        np.sign(tmp, out=tmp)
        if wd:
            p *= 1 - lr * wd
        tmp *= lr
        p -= tmp
        _ema(m, g, b2, tmp)


# ---------------------------------------------------------------------------------------------
# The rules benchmarked, with the bytes each step must move
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

MODEL_SHAPES: tuple[tuple[int, ...], ...] = ((256, 256), (256,)) * 8 + ((64, 64), (64,)) * 42
DEFAULT_SIZES = "1e4,1e5,1e6,1e7,5e7,model"


@dataclass(frozen=True)
class Work:
    label: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def _size_label(n: int) -> str:
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 and exponent >= 3 else str(n)


def parse_work(token: str) -> Work:
    token = token.strip()
    if token == "model":
        return Work("model", MODEL_SHAPES)
    try:
        value = float(token)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is a number of elements (1e6) or 'model', got {token!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"a size must be a whole number of elements >= 1, got {token!r}")
    n = int(value)
    return Work(_size_label(n), ((n,),))


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------

PEERS = ("fastoptim", "numpy", "torch_forloop", "torch_foreach", "torch_fused", "deepspeed", "probe")
PEER_TITLES = {"fastoptim": "fastoptim", "numpy": "NumPy", "torch_forloop": "torch loop",
               "torch_foreach": "torch foreach", "torch_fused": "torch fused", "deepspeed": "DeepSpeed",
               "probe": "probe"}
_TORCH_VARIANTS = {"torch_forloop": {"foreach": False}, "torch_foreach": {"foreach": True},
                   "torch_fused": {"fused": True}}
# temporaries each peer allocates, in arrays of the workload (beyond its parameters, gradients
# and state): the memory guard's estimate
_EXTRA_ARRAYS = {"fastoptim": 0, "numpy": 3, "torch_forloop": 3, "torch_foreach": 4, "torch_fused": 0,
                 "deepspeed": 0, "probe": 0}


@dataclass
class Running:
    """A peer ready to step: ``step()`` runs one step; ``params`` are the arrays it updates."""

    step: Callable[[], None]
    params: list[Array] | None
    keep: list[Any] = field(default_factory=list)  # objects that must live as long as the peer


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
        if any(p.startswith("torch") or p == "deepspeed" for p in peers):
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
        if peer.startswith("torch_"):
            return self.torch_problem(rule, dtype, peer)
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
            return Running(functools.partial(opt.step, grads), params, [opt, grads])
        if peer == "numpy":
            nopt = rule.numpy_class(params, rule.hyper())
            return Running(functools.partial(nopt.step, grads), params, [nopt, grads])
        if peer == "probe":
            del params, grads
            n, dtype = sum(p.size for p in params0), params0[0].dtype
            arrays = [np.full(n, 0.0, dtype) for _ in range(max(r for r, _ in rule.passes))]
            sweeps = [(arrays[:r], w) for r, w in rule.passes]
            threads = fo.get_num_threads()

            def probe() -> None:
                for chosen, writes in sweeps:
                    _core.probe(chosen, writes, threads)

            return Running(probe, None, [arrays])
        torch = self.torch
        tensors = [torch.from_numpy(p).requires_grad_() for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
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


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _kw(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    rules: list[str]
    works: list[Work]
    dtypes: list[str]
    peers: list[str]
    threads: int
    repeats: int = 5
    min_time: float = 0.2
    max_repeats: int = 500
    max_time: float = 8.0
    warmup: int = 3
    seed: int = 0
    out: Path | None = None
    plot: bool = True
    warm_cache: bool = True
    progress: bool = True


def alternate(steps: dict[str, Callable[[], None]], warmup: int, repeats: int, min_time: float, max_repeats: int,
              max_time: float, warm_cache: bool = True) -> dict[str, list[float]]:
    """Time one step of each peer in turn, `warmup` untimed rounds first, then enough rounds for
    the fastest peer's steps to add up to `min_time` (at least `repeats`, at most `max_repeats`
    and what fits in `max_time`). The starting peer rotates each round. With `warm_cache`, each
    timed step follows an untimed step of the same peer, so arrays that fit in the caches are in
    them, as in a training loop that steps one optimizer; without it, the peers evict each
    other. Returns seconds per step."""
    names = list(steps)
    clock = time.perf_counter
    last = dict.fromkeys(names, 0.0)
    enabled = gc.isenabled()
    gc.disable()  # no collection inside a timed step
    try:
        for _ in range(max(warmup, 1)):
            for name in names:
                start = clock()
                steps[name]()
                last[name] = clock() - start
        fastest, round_time = max(min(last.values()), 1e-9), max(sum(last.values()), 1e-9)
        rounds = min(math.ceil(min_time / fastest), max_repeats, int(max_time / round_time))
        rounds = max(rounds, repeats, 1)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                step = steps[name]
                if warm_cache:
                    step()
                start = clock()
                step()
                times[name].append(clock() - start)
        return times
    finally:
        if enabled:
            gc.enable()


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def plan_groups(peers: Sequence[str], bytes_per_array: int, rule: Rule, budget: int | None) -> list[list[str]]:
    """Peers that are alternated together. All of them while their arrays fit in `budget`;
    else several groups, each with fastoptim and the probe (the references) beside as many
    others as fit."""
    state_arrays = max(r for r, _ in rule.passes)

    def cost(peer: str) -> int:
        return (state_arrays + _EXTRA_ARRAYS[peer]) * bytes_per_array

    base_cost = 2 * bytes_per_array  # the starting values every peer copies
    if budget is None or base_cost + sum(cost(p) for p in peers) <= budget:
        return [list(peers)]
    anchors = [p for p in peers if p in ("fastoptim", "probe")]
    others = [p for p in peers if p not in anchors]
    groups: list[list[str]] = []
    while others:
        group, used = list(anchors), base_cost + sum(cost(p) for p in anchors)
        while others and (used + cost(others[0]) <= budget or len(group) == len(anchors)):
            used += cost(others[0])
            group.append(others.pop(0))
        groups.append(group)
    return groups or [anchors]


def _stats(times: list[float], elements: int) -> dict[str, Any]:
    ordered = sorted(times)
    q1, median, q3 = (float(np.quantile(ordered, q)) for q in (0.25, 0.5, 0.75))
    return {"gels": elements / median / 1e9, "median_s": median, "q1_s": q1, "q3_s": q3, "min_s": ordered[0],
            "steps": len(times)}


def _deviation(params: list[Array], reference: list[Array], start: list[Array]) -> float:
    """Largest |peer − fastoptim| over the largest distance fastoptim moved: 0 when identical."""
    def largest(x: Array, y: Array) -> float:
        d = np.subtract(x, y)
        return float(np.max(np.abs(d, out=d)))

    diff = max(largest(a, b) for a, b in zip(params, reference))
    moved = max(largest(b, s) for b, s in zip(reference, start))
    return diff / moved if moved > 0 else (0.0 if diff == 0 else math.inf)


def measure(rule: Rule, dtype: str, work: Work, settings: Settings, env: _Env,
            status: Callable[[str], None]) -> dict[str, Any]:
    """Every peer on one (rule, dtype, work), alternated; one record of the JSON."""
    np_dtype = np.dtype(dtype)
    rng = np.random.default_rng(settings.seed)
    status("starting values")
    params0 = [rng.standard_normal(s, dtype=np_dtype) for s in work.shapes]
    grads0 = [rng.standard_normal(s, dtype=np_dtype) for s in work.shapes]
    record: dict[str, Any] = {
        "rule": rule.name, "dtype": dtype, "work": work.label, "elements": work.elements,
        "arrays": len(work.shapes), "kwargs": rule.kwargs, "traffic": [list(p) for p in rule.passes],
        "bytes_per_element": rule.bytes_per_element * np_dtype.itemsize // 4, "peers": {}, "skipped": {}}
    runnable = []
    for peer in settings.peers:
        reason = env.problem(peer, rule, dtype)
        if reason is None:
            runnable.append(peer)
        else:
            record["skipped"][peer] = reason
    bytes_per_array = work.elements * np_dtype.itemsize
    budget = _mem_available()
    groups = plan_groups(runnable, bytes_per_array, rule, None if budget is None else int(budget * 0.8))
    record["groups"] = groups
    warmup = max(settings.warmup, rule.steady_after)
    record["warmup"] = warmup
    pooled: dict[str, list[float]] = {}
    deviations: dict[str, float] = {}
    for g, group in enumerate(groups):
        where = f" (group {g + 1}/{len(groups)})" if len(groups) > 1 else ""
        running: dict[str, Running] = {}
        try:
            status(f"setting up{where}")
            for peer in group:
                try:
                    running[peer] = env.build(peer, rule, params0, grads0)
                except Exception as error:  # noqa: BLE001  (a peer that fails to start is skipped, saying why)
                    record["skipped"][peer] = f"failed to start: {type(error).__name__}: {error}"
            if not running:
                continue
            status(f"timing {len(running)} peers{where}")
            times = alternate({p: r.step for p, r in running.items()}, warmup, settings.repeats, settings.min_time,
                              settings.max_repeats, settings.max_time, settings.warm_cache)
            for peer, ts in times.items():
                pooled.setdefault(peer, []).extend(ts)
            reference = running.get("fastoptim")
            if reference is not None and reference.params is not None:
                for peer, r in running.items():
                    if r.params is not None and peer != "fastoptim":
                        deviations[peer] = _deviation(r.params, reference.params, params0)
        finally:
            running.clear()
            gc.collect()
    del params0, grads0
    for peer in settings.peers:
        if peer in pooled:
            record["peers"][peer] = _stats(pooled[peer], work.elements)
            if peer in deviations:
                record["peers"][peer]["deviation"] = deviations[peer]
    record["repeats"] = max((len(ts) for ts in pooled.values()), default=0)
    gels = {peer: s["gels"] for peer, s in record["peers"].items()}
    fused, probe = gels.get("torch_fused"), gels.get("probe")
    record["ratio_to_torch_fused"] = {p: v / fused for p, v in gels.items()} if fused else None
    record["fraction_of_probe"] = {p: v / probe for p, v in gels.items() if p != "probe"} if probe else None
    return record


# ---------------------------------------------------------------------------------------------
# Machine, table, plot, JSON
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(env: _Env) -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    affinity = getattr(os, "sched_getaffinity", None)

    def version(name: str) -> str | None:
        if importlib.util.find_spec(name) is None:
            return None
        try:
            from importlib.metadata import version as dist_version

            return dist_version(name)
        except Exception:  # noqa: BLE001
            return "installed"

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else os.cpu_count(),
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None if env.torch is None else str(env.torch.__version__),
        "deepspeed": version("deepspeed"),
        "fastoptim": fo.config(),
        "openmp_wait": _omp.wait_settings(),
        "threads": {"fastoptim": fo.get_num_threads(),
                    "torch": None if env.torch is None else int(env.torch.get_num_threads()),
                    "numpy": 1},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _fmt(x: float | None, kind: str = "gels") -> str:
    if x is None:
        return "—"
    if kind == "ratio":
        return f"{x:.2f}x"
    if kind == "percent":
        return f"{100 * x:.0f}%"
    return f"{x:.3g}"


def table(results: list[dict[str, Any]], peers: Sequence[str]) -> str:
    """rule, dtype, work, each peer's Gel/s, fastoptim / torch fused, fastoptim / probe."""
    shown = [p for p in peers if any(p in r["peers"] for r in results)]
    head = ["rule", "dtype", "work"] + [PEER_TITLES[p] for p in shown] + ["fo/fused", "fo/probe"]
    rows = [head]
    for r in results:
        fo_gels = r["peers"].get("fastoptim", {}).get("gels")
        fused = r["peers"].get("torch_fused", {}).get("gels")
        probe = r["peers"].get("probe", {}).get("gels")
        rows.append([r["rule"], r["dtype"], r["work"]]
                    + [_fmt(r["peers"].get(p, {}).get("gels")) for p in shown]
                    + [_fmt(fo_gels / fused if fo_gels and fused else None, "ratio"),
                       _fmt(fo_gels / probe if fo_gels and probe else None, "percent")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_COLORS = {"fastoptim": "tab:red", "numpy": "tab:blue", "torch_forloop": "tab:olive", "torch_foreach": "tab:orange",
           "torch_fused": "tab:green", "deepspeed": "tab:purple", "probe": "black"}
PLOT_HINT = "no plot: matplotlib is not installed (pip install 'fastoptim[plot]')"


def plot(results: list[dict[str, Any]], peers: Sequence[str], path: Path, title: str) -> None:
    """Gel/s against elements, log-log, one panel per (rule, dtype). Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = list(dict.fromkeys((r["rule"], r["dtype"]) for r in results))
    dtypes = list(dict.fromkeys(d for _, d in panels))
    rules = list(dict.fromkeys(rule for rule, _ in panels))
    ncols = len(dtypes)
    nrows = len(rules)
    fig = Figure(figsize=(5.2 * ncols + 1.8, 3.6 * nrows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for (rule, dtype) in panels:
        ax = axes[rules.index(rule)][dtypes.index(dtype)]
        mine = [r for r in results if r["rule"] == rule and r["dtype"] == dtype]
        single = sorted((r for r in mine if r["arrays"] == 1), key=lambda r: r["elements"])
        model = [r for r in mine if r["arrays"] > 1]
        for peer in peers:
            line = [(r["elements"], r["peers"][peer]["gels"]) for r in single if peer in r["peers"]]
            style: dict[str, Any] = {"color": _COLORS[peer]}
            if peer == "probe":
                style.update(linestyle="--", linewidth=1)
            if line:
                xs, ys = zip(*line)
                ax.plot(xs, ys, marker="o", markersize=4, **style)
            for r in model:
                if peer in r["peers"]:
                    ax.plot([r["elements"]], [r["peers"][peer]["gels"]], marker="s", markersize=7,
                            markerfacecolor="none", linestyle="none", color=_COLORS[peer])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{rule}, {dtype}")
        ax.set_xlabel("elements per step")
        ax.set_ylabel("Gel/s")
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=_COLORS[p], marker="o", linestyle="--" if p == "probe" else "-",
                      label=PEER_TITLES[p] + (" (limit)" if p == "probe" else "")) for p in peers
               if any(p in r["peers"] for r in results)]
    handles.append(Line2D([], [], color="gray", marker="s", markerfacecolor="none", linestyle="none",
                          label="100-array model"))
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(title)
    fig.savefig(path)


# ---------------------------------------------------------------------------------------------
# The run and the command line
# ---------------------------------------------------------------------------------------------


class _Status:
    """One progress line on stderr: rewritten in place on a terminal, one line per workload otherwise."""

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.index, self.label, self.width = 0, "", 0

    def begin(self, index: int, label: str) -> None:
        self.index, self.label = index, label
        if self.enabled and not self.tty:
            self.stream.write(f"[{index}/{self.total}] {label}\n")
            self.stream.flush()

    def __call__(self, phase: str) -> None:
        if self.tty:
            text = f"[{self.index}/{self.total}] {self.label}: {phase} ({time.perf_counter() - self.start:.0f} s)"
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
            self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def run(settings: Settings, stream: IO[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the JSON document (and writes it, and the plot, to settings.out)."""
    stream = sys.stderr if stream is None else stream
    notes: list[str] = []
    previous_threads = fo.get_num_threads()
    fo.set_num_threads(settings.threads)
    env = _Env(settings.threads, notes)
    try:
        env.load(settings.peers)
        for peer in settings.peers:
            if peer.startswith("torch") and env.torch_reason:
                env.note(env.torch_reason)
            if peer == "deepspeed" and env.deepspeed_reason:
                env.note(env.deepspeed_reason)
        jobs = [(RULES[r], d, w) for r in settings.rules for d in settings.dtypes for w in settings.works]
        status = _Status(len(jobs), stream, settings.progress)
        results = []
        skips: dict[tuple[str, str], dict[str, list[str]]] = {}
        for index, (rule, dtype, work) in enumerate(jobs, start=1):
            status.begin(index, f"{rule.name} {dtype} {work.label}")
            record = measure(rule, dtype, work, settings, env, status)
            for peer, reason in record["skipped"].items():
                if reason not in (env.torch_reason, env.deepspeed_reason):
                    skips.setdefault((rule.name, reason), {}).setdefault(PEER_TITLES[peer], []).append(dtype)
            if len(record["groups"]) > 1:
                env.note(f"{rule.name} {dtype} {work.label}: not enough memory for every peer at once; "
                         f"alternated in groups {record['groups']}")
            results.append(record)
        status.end()
        for (rule_name, reason), skipped in skips.items():
            dtypes = sorted({d for ds in skipped.values() for d in ds})
            env.note(f"{', '.join(skipped)} skipped for {rule_name} ({', '.join(dtypes)}): {reason}")
        document: dict[str, Any] = {
            "schema": 1,
            "machine": machine(env),
            "settings": {"rules": settings.rules, "sizes": [w.label for w in settings.works],
                         "dtypes": settings.dtypes, "peers": settings.peers, "threads": settings.threads,
                         "repeats": settings.repeats, "min_time": settings.min_time,
                         "max_repeats": settings.max_repeats, "max_time": settings.max_time,
                         "warmup": settings.warmup, "seed": settings.seed},
            "units": {"gels": "1e9 parameter elements per second, from the median step",
                      "ratio_to_torch_fused": "Gel/s over torch fused's Gel/s",
                      "fraction_of_probe": "Gel/s over the probe's Gel/s on the same bytes"},
            "peers": list(settings.peers),
            "notes": notes,
            "results": results,
        }
        written: list[str] = []
        if settings.out is not None:
            settings.out.mkdir(parents=True, exist_ok=True)
            if settings.plot:
                try:
                    plot(results, settings.peers, settings.out / "bench.png",
                         f"one optimizer step, {document['machine']['cpu']}, {_threads(settings.threads)}")
                    written.append(str(settings.out / "bench.png"))
                except ImportError:
                    env.note(PLOT_HINT)
            written.insert(0, str(settings.out / "bench.json"))
            document["files"] = written
            (settings.out / "bench.json").write_text(json.dumps(document, indent=1) + "\n")
        return document
    finally:
        fo.set_num_threads(previous_threads)
        env.restore()


def _csv(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["all"]:
            return list(choices)
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) if bad else repr(text)}; choose from "
                                             f"{', '.join(choices)} or all")
        return list(dict.fromkeys(items))
    return parse


def _sizes(text: str) -> list[Work]:
    works = [parse_work(t) for t in text.split(",") if t.strip()]
    if not works:
        raise argparse.ArgumentTypeError("--sizes needs at least one size")
    return list({w.label: w for w in works}.values())


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


# GOMP_SPINCOUNT for each --omp-spin choice.
SPINS = {"openmp": _omp.OPENMP_DEFAULT_SPIN, "fastoptim": _omp.FASTOPTIM_SPIN}


def parser(prog: str = "fastoptim bench", full: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="One optimizer step, fastoptim beside NumPy, torch.optim (for-loop, foreach, fused) and "
                    "DeepSpeedCPUAdam, alternated in one run, against the bandwidth probe's limit. "
                    + ("The full grid: every rule, float32 and float64." if full else
                       "Quick by default: Adam in float32 over every size."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rules", type=_csv(list(RULES), "rule"), default=",".join(RULES) if full else "adam",
                   help="comma-separated rules, or all")
    p.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES,
                   help="comma-separated element counts of one array (1e6), or 'model' (100 arrays, 0.7M elements)")
    p.add_argument("--dtypes", type=_csv(["float32", "float64"], "dtype"),
                   default="float32,float64" if full else "float32", help="float32, float64 or both")
    p.add_argument("--peers", type=_csv(PEERS, "peer"), default=",".join(PEERS), help="which peers to run")
    p.add_argument("--threads", type=_positive(int), default=fo.get_num_threads(),
                   help="threads for fastoptim, the probe and torch (fo.set_num_threads, torch.set_num_threads); "
                        "the default is fastoptim's (OMP_NUM_THREADS, else every core)")
    p.add_argument("--repeats", type=_positive(int), default=5, help="at least this many timed steps per peer")
    p.add_argument("--min-time", type=_positive(float), default=0.2,
                   help="seconds of timed steps the fastest peer must reach (repeats adapt to the size)")
    p.add_argument("--max-repeats", type=_positive(int), default=500, help="at most this many timed steps per peer")
    p.add_argument("--max-time", type=_positive(float), default=8.0,
                   help="seconds one workload's timed rounds may take, all peers together (--repeats wins)")
    p.add_argument("--warmup", type=_positive(int), default=3, help="untimed steps per peer before timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting values and gradients")
    p.add_argument("--out", type=Path, default=Path("bench/results" if full else "fastoptim-bench"),
                   help="folder for bench.json and bench.png")
    p.add_argument("--quick", action="store_true",
                   help="Adam in float32 over every size (the default of `fastoptim bench`); overrides --rules "
                        "and --dtypes")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--cold-cache", action="store_true",
                   help="time each peer's step right after the other peers' (they evict each other's arrays); "
                        "by default each timed step follows an untimed one of the same peer, as in training")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--omp-spin", choices=list(SPINS), default="openmp",
                   help="GNU OpenMP's busy-wait after a parallel region, one for every peer (the process has one "
                        "OpenMP): 'openmp', its own default, as torch has it alone (GOMP_SPINCOUNT="
                        f"{_omp.OPENMP_DEFAULT_SPIN}); 'fastoptim', the shorter spin `import fastoptim` sets "
                        f"(GOMP_SPINCOUNT={_omp.FASTOPTIM_SPIN}), which torch imported after it shares. "
                        "Wait variables set in the environment are kept")
    return p


def _rerun_with_spin(choice: str, argv: Sequence[str], full: bool, prog: str) -> int | None:
    """GNU OpenMP read its wait settings when `import fastoptim` loaded it: for another spin the
    benchmark runs again in a process that starts with it. None when this process has it, or
    when the user set the wait variables (kept, and noted in the results)."""
    wanted = SPINS[choice]
    if not _omp.set_on_import or os.environ.get("GOMP_SPINCOUNT") == wanted:
        return None
    code = (f"import sys; from fastoptim import _omp; _omp.chosen_by = 'fastoptim bench --omp-spin {choice}'; "
            f"from fastoptim._bench import main; sys.exit(main(sys.argv[1:], full={full!r}, prog={prog!r}))")
    return subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, "GOMP_SPINCOUNT": wanted},
                          check=False).returncode


def _spin_line(choice: str) -> str:
    wait = _omp.wait_settings()
    shown = ", ".join(f"{k}={v}" for k, v in wait.items() if k != "set_by" and v is not None) or "its defaults"
    line = f"OpenMP wait for every peer: {shown}"
    if wait["set_by"] == "environment" and wait["GOMP_SPINCOUNT"] != SPINS[choice]:
        line += f" (set in the environment; --omp-spin {choice} not applied)"
    return line


def main(argv: Sequence[str] | None = None, *, full: bool = False, prog: str = "fastoptim bench") -> int:
    """``fastoptim bench [options]``; `full` makes the defaults the full grid (bench/bench.py)."""
    try:
        args = parser(prog, full).parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # --help, or a bad option (argparse has printed why)
        return stop.code if isinstance(stop.code, int) else 2
    if args.quick:
        args.rules, args.dtypes = ["adam"], ["float32"]
    rerun = _rerun_with_spin(args.omp_spin, list(sys.argv[1:] if argv is None else argv), full, prog)
    if rerun is not None:
        return rerun
    settings = Settings(rules=args.rules, works=args.sizes, dtypes=args.dtypes, peers=args.peers,
                        threads=args.threads, repeats=args.repeats, min_time=args.min_time,
                        max_repeats=args.max_repeats, max_time=args.max_time, warmup=args.warmup, seed=args.seed,
                        out=args.out, plot=not args.no_plot, progress=not args.quiet,
                        warm_cache=not args.cold_cache)
    document = run(settings)
    print(table(document["results"], settings.peers))
    print()
    print("Gel/s = 1e9 parameter elements per second (median step, after warm-up); fo/fused = fastoptim over "
          "torch fused; fo/probe = fastoptim's share of the probe's limit on the same bytes.")
    m = document["machine"]
    print(f"{m['cpu']}, {_threads(settings.threads)} (fastoptim {m['fastoptim']['version']}, "
          f"{m['fastoptim']['target']}; torch {m['torch'] or '—'}; NumPy {m['numpy']}, one thread)")
    print(_spin_line(args.omp_spin))
    for note in document["notes"]:
        print(f"note: {note}")
    if document.get("files"):
        print("wrote " + ", ".join(document["files"]))
    return 0
