"""The NumPy peer: every rule written with in-place ufuncs (``out=``) and preallocated temporaries.

One class per optimizer, over :class:`NumpyOptimizer`, which holds each array's state and its
temporaries, allocated once, and folds the step's scalars once per step: NumPy at its careful
best, so the benchmark compares fastoptim with a peer, not a straw man. The tests check each
class against fastoptim's update. ``Array`` is the array type every module of the benchmark
annotates with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


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

    def _caution(self, i: int, u: Array, g: Array) -> Array:
        """The direction u as the step applies it: as it is (the cautious peers mask it)."""
        return u


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


def _caution(u: Array, g: Array, agree: np.ndarray, out: Array) -> Array:
    """u·[u·g > 0]·n/(k + 1) into `out`, k the components that agree (Liang et al. 2024)."""
    np.multiply(u, g, out=out)
    np.greater(out, 0, out=agree)
    np.multiply(u, agree, out=out)
    out *= agree.size / (np.count_nonzero(agree) + 1)
    return out


class _Cautious(NumpyOptimizer):
    """A peer with cautious updates: the masked direction and the mask, allocated once."""

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        self.agree = [np.empty(p.shape, dtype=bool) for p in self.params]
        self.masked = [np.empty_like(p) for p in self.params]

    def _caution(self, i: int, u: Array, g: Array) -> Array:
        return _caution(u, g, self.agree[i], self.masked[i])


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
            u = b
            if self.hp["nesterov"]:
                np.multiply(b, mu, out=tmp)
                tmp += g
                u = tmp
            g = self._caution(i, u, g)
        np.multiply(g, lr, out=tmp)
        p -= tmp


class NpSGDW(NpSGD):
    """SGD after decaying the weights by 1 - lr * weight_decay (no L2 term in the gradient)."""

    uses_l2 = False

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        p *= 1.0 - self.hp["lr"] * self.hp["weight_decay"]
        super()._update(i, p, g, k)


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
        np.divide(self._caution(i, m, g), tmp, out=tmp)
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
        u = self._caution(i, tmp, g)
        if wd:
            p *= 1 - lr * wd
        u *= lr
        p -= u
        _ema(m, g, b2, tmp)


class _NpScheduleFree(NumpyOptimizer):
    """Schedule-Free's averaging weights and its move of y and z; subclasses put u in ``tmp``."""

    slots: tuple[str, ...] = ("z",)
    needs_second_tmp = True
    uses_l2 = False  # λ·y goes into u, not into g

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        self.lr_max, self.weight_sum = -1.0, 0.0

    def _beta(self) -> float:
        raise NotImplementedError

    def _scalars(self, t: int) -> dict[str, float]:
        hp = self.hp
        lr = hp["lr"] * (t / hp["warmup_steps"]) if t - 1 < hp["warmup_steps"] else hp["lr"]
        self.lr_max = max(lr, self.lr_max)
        weight = t ** hp["r"] * self.lr_max ** hp["weight_lr_power"]
        self.weight_sum += weight
        c = weight / self.weight_sum if self.weight_sum else 0.0
        return {"lr": lr, "c": c, "y_step": lr * (self._beta() * (1 - c) - 1)}

    def _direction(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        raise NotImplementedError

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        z, tmp, tmp2 = self.state[i]["z"], self.tmp[i], self.tmp2[i]
        if self.t == 1:
            np.copyto(z, p)  # z starts as the parameter
        self._direction(i, p, g, k)
        if self.hp["weight_decay"]:  # u += λ·y
            np.multiply(p, self.hp["weight_decay"], out=tmp2)
            tmp += tmp2
        np.subtract(z, p, out=tmp2)  # y ← y + c·(z − y) + y_step·u
        tmp2 *= k["c"]
        p += tmp2
        np.multiply(tmp, k["y_step"], out=tmp2)
        p += tmp2
        tmp *= k["lr"]
        z -= tmp


class NpScheduleFreeAdamW(_NpScheduleFree):
    slots = ("z", "exp_avg_sq")

    def _beta(self) -> float:
        return float(self.hp["betas"][0])

    def _scalars(self, t: int) -> dict[str, float]:
        return {**super()._scalars(t), "inv_bias2": 1 / (1 - self.hp["betas"][1] ** t)}

    def _direction(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        v, tmp = self.state[i]["exp_avg_sq"], self.tmp[i]
        _ema_sq(v, g, self.hp["betas"][1], tmp)
        np.multiply(v, k["inv_bias2"], out=tmp)  # u = g / (sqrt(v̂) + ε)
        np.sqrt(tmp, out=tmp)
        tmp += self.hp["eps"]
        np.divide(g, tmp, out=tmp)


class NpScheduleFreeSGD(_NpScheduleFree):
    def _beta(self) -> float:
        return float(self.hp["momentum"])

    def _direction(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        np.copyto(self.tmp[i], g)


class NpADOPT(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, {**hp, "decoupled_weight_decay": hp["weight_decouple"]})

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        hp, st, tmp = self.hp, self.state[i], self.tmp[i]
        (b1, b2), m, v = hp["betas"], st["exp_avg"], st["exp_avg_sq"]
        if hp["weight_decouple"] and hp["weight_decay"]:
            p *= 1 - hp["weight_decay"] * (1.0 if hp["fixed_decay"] else hp["lr"])
        if self.t == 1:  # v ← g², the parameter stays
            np.multiply(g, g, out=tmp)
            v += tmp
            return
        np.sqrt(v, out=tmp)  # n = clip(g / max(sqrt(v), ε), ±t^e), with the previous v
        np.maximum(tmp, hp["eps"], out=tmp)
        np.divide(g, tmp, out=tmp)
        bound = self.t ** hp["clip_exponent"]
        np.clip(tmp, -bound, bound, out=tmp)
        tmp -= m  # m ← m + (1 − β1)(n − m)
        tmp *= 1 - b1
        m += tmp
        np.multiply(m, hp["lr"], out=tmp)
        p -= tmp
        _ema_sq(v, g, b2, tmp)


class NpAdan(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad")
    needs_second_tmp = True
    uses_l2 = False

    def _scalars(self, t: int) -> dict[str, float]:
        b1, b2, b3 = self.hp["betas"]
        return {"inv_bias1": 1 / (1 - b1**t), "diff_scale": (1 - b2) / (1 - b2**t), "inv_bias3": 1 / (1 - b3**t)}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        hp, st, tmp, tmp2 = self.hp, self.state[i], self.tmp[i], self.tmp2[i]
        (b1, b2, b3), m, s, n, prev = hp["betas"], st["exp_avg"], st["exp_avg_diff"], st["exp_avg_sq"], st["prev_grad"]
        if self.t == 1:
            np.copyto(prev, g)  # d = 0 on the first step
        np.subtract(g, prev, out=tmp)  # d
        _ema(s, tmp, b2, tmp2)
        tmp *= 1 - b2  # n ← β3·n + (1 − β3)(g + (1 − β2)·d)²
        tmp += g
        _ema_sq(n, tmp, b3, tmp)
        np.copyto(prev, g)
        _ema(m, g, b1, tmp)
        np.multiply(m, k["inv_bias1"], out=tmp)  # u = (m̂ + (1 − β2)·ŝ) / (sqrt(n̂ + ε_root) + ε)
        np.multiply(s, k["diff_scale"], out=tmp2)
        tmp += tmp2
        np.multiply(n, k["inv_bias3"], out=tmp2)
        tmp2 += hp["eps_root"]
        np.sqrt(tmp2, out=tmp2)
        tmp2 += hp["eps"]
        tmp /= tmp2
        if hp["weight_decay"]:
            np.multiply(p, hp["weight_decay"], out=tmp2)
            tmp += tmp2
        tmp *= hp["lr"]
        p -= tmp


class NpAdEMAMix(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq", "exp_avg_slow")
    needs_second_tmp = True
    uses_l2 = False

    def _scalars(self, t: int) -> dict[str, float]:
        hp = self.hp
        (b1, b2, b3), alpha, horizon = hp["betas"], hp["alpha"], hp["t_alpha_beta3"]
        if 0 < t < horizon:  # the paper's warmups of α and β3
            alpha = min(t * alpha / horizon, alpha)
            if b3:
                s, log1, log3 = t / horizon, math.log(b1), math.log(b3)
                b3 = min(math.exp(log1 * log3 / ((1 - s) * log3 + s * log1)), b3)
        # (m1/(1-β1ᵗ) + α·m2) / (sqrt(v/(1-β2ᵗ)) + ε) = step · (m1 + α(1-β1ᵗ)·m2) / (sqrt(v) + ε·sqrt(1-β2ᵗ))
        sqrt_bias2 = math.sqrt(1 - b2**t)
        return {"beta3": b3, "slow": alpha * (1 - b1**t), "step": hp["lr"] * sqrt_bias2 / (1 - b1**t),
                "eps": hp["eps"] * sqrt_bias2}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        hp, st, tmp, tmp2 = self.hp, self.state[i], self.tmp[i], self.tmp2[i]
        (b1, b2, _), m1, v, m2 = hp["betas"], st["exp_avg"], st["exp_avg_sq"], st["exp_avg_slow"]
        if hp["weight_decay"]:
            p *= 1 - hp["lr"] * hp["weight_decay"]
        _ema(m1, g, b1, tmp)
        _ema_sq(v, g, b2, tmp)
        _ema(m2, g, k["beta3"], tmp)
        np.sqrt(v, out=tmp)
        tmp += k["eps"]
        np.multiply(m2, k["slow"], out=tmp2)
        tmp2 += self._caution(i, m1, g)
        tmp2 /= tmp
        tmp2 *= k["step"]
        p -= tmp2


class NpASGD(NumpyOptimizer):
    slots = ("ax",)

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        self.eta, self.mu = float(hp["lr"]), 1.0  # torch's: the next step's η and μ

    def _scalars(self, t: int) -> dict[str, float]:
        hp, now = self.hp, {"eta": self.eta, "mu": self.mu}
        self.eta = hp["lr"] / (1 + hp["lambd"] * hp["lr"] * t) ** hp["alpha"]
        self.mu = 1 / max(1.0, t - hp["t0"])
        return now

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        ax, tmp = self.state[i]["ax"], self.tmp[i]
        p *= 1 - self.hp["lambd"] * k["eta"]  # p ← p(1 − λη) − ηg
        np.multiply(g, k["eta"], out=tmp)
        p -= tmp
        if k["mu"] == 1:
            np.copyto(ax, p)
        else:  # ax ← ax + μ(p − ax)
            np.subtract(p, ax, out=tmp)
            tmp *= k["mu"]
            ax += tmp



class NpAdamWCautious(_Cautious, NpAdamW):
    """AdamW with the mask of m·g > 0 on m."""


class NpSGDCautious(_Cautious, NpSGD):
    """SGD with the mask of (the momentum's direction)·g > 0, with momentum only."""


class NpSGDWCautious(_Cautious, NpSGDW):
    """SGDW with SGD's mask."""


class NpLionCautious(_Cautious, NpLion):
    """Lion with the mask of sign(c)·g > 0."""


class NpAdEMAMixCautious(_Cautious, NpAdEMAMix):
    """AdEMAMix with the mask of m1·g > 0 on m1 only."""


class NpAdafactor(NumpyOptimizer):
    """torch.optim.Adafactor: the row and column means of g² for a matrix (the last two
    dimensions factored), the full g² average for a vector; RMS(p) before the weight decay."""

    slots = ("row_var", "col_var", "variance")
    uses_l2 = False

    def _needed(self) -> tuple[str, ...]:
        return ()

    def __init__(self, params: Sequence[Array], hp: dict[str, Any]) -> None:
        super().__init__(params, hp)
        for p, st in zip(self.params, self.state):
            if p.ndim >= 2:
                st["row_var"] = np.zeros(p.shape[:-1] + (1,), p.dtype)
                st["col_var"] = np.zeros(p.shape[:-2] + (1, p.shape[-1]), p.dtype)
            else:
                st["variance"] = np.zeros_like(p)

    def _scalars(self, t: int) -> dict[str, float]:
        lr = self.hp["lr"]
        return {"weight": t ** self.hp["beta2_decay"], "rho": min(lr, 1 / t**0.5),
                "decay": 1 - lr * self.hp["weight_decay"]}

    def _update(self, i: int, p: Array, g: Array, k: dict[str, float]) -> None:
        hp, st, tmp = self.hp, self.state[i], self.tmp[i]
        eps1 = float(np.finfo(p.dtype).eps) if hp["eps"][0] is None else hp["eps"][0]
        root_n = math.sqrt(p.size)
        alpha = max(hp["eps"][1], _norm(p) / root_n) * k["rho"]
        if p.ndim >= 2:
            row_var, col_var = st["row_var"], st["col_var"]
            np.multiply(g, g, out=tmp)
            row_var += k["weight"] * (tmp.mean(axis=-1, keepdims=True) - row_var)
            col_var += k["weight"] * (tmp.mean(axis=-2, keepdims=True) - col_var)
            rows = row_var / np.maximum(row_var.mean(axis=-2, keepdims=True), eps1)
            np.multiply(rows, col_var, out=tmp)  # v̂ = R·C / max(mean(R), ε₁)
        else:
            variance = st["variance"]
            np.multiply(g, g, out=tmp)
            tmp -= variance
            tmp *= k["weight"]
            variance += tmp
            np.copyto(tmp, variance)
        np.maximum(tmp, eps1 * eps1, out=tmp)  # u = g / sqrt(max(v̂, ε₁²))
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        scale = alpha / max(1.0, _norm(tmp) / (root_n * hp["d"]))
        if hp["weight_decay"]:
            p *= k["decay"]
        tmp *= -scale if hp["maximize"] else scale  # maximize: -g gives -u (and the same v̂)
        p -= tmp
