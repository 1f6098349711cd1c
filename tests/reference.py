"""Independent float64 references of every update rule, written from the formulas.

Each takes the parameter p (float64, updated in place), the gradient g, the state dict st
(filled lazily, as torch does), the group's hyper-parameters hp and the step t (1 on the first
step). They share no code with fastoptim.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Array = np.ndarray
Hyper = dict[str, Any]


def sgd(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    g = -g if hp["maximize"] else g.copy()
    if hp["weight_decay"]:
        g = g + hp["weight_decay"] * p
    mu = hp["momentum"]
    if mu:
        b = g.copy() if "momentum_buffer" not in st else mu * st["momentum_buffer"] + (1 - hp["dampening"]) * g
        st["momentum_buffer"] = b
        g = g + mu * b if hp["nesterov"] else b
    p -= hp["lr"] * g


def adam(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    lr, (b1, b2), eps, wd = hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"]
    g = -g if hp["maximize"] else g
    if hp.get("decoupled_weight_decay", False):
        p *= 1 - lr * wd
    elif wd:
        g = g + wd * p
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    v_hat = v
    if hp["amsgrad"]:
        v_hat = np.maximum(st.get("max_exp_avg_sq", np.zeros_like(p)), v)
        st["max_exp_avg_sq"] = v_hat
    p -= lr / (1 - b1**t) * m / (np.sqrt(v_hat) / np.sqrt(1 - b2**t) + eps)


def run(rule: Callable[..., None], params: list[Array], grads_per_step: list[list[Array]], hp: Hyper) -> tuple[
        list[Array], list[dict[str, Array]]]:
    """Several steps of `rule` in float64 from the given starting values."""
    ps = [np.array(p, dtype=np.float64) for p in params]
    states: list[dict[str, Array]] = [{} for _ in ps]
    for t, grads in enumerate(grads_per_step, start=1):
        for p, g, st in zip(ps, grads, states):
            rule(p, np.asarray(g, dtype=np.float64), st, hp, t)
    return ps, states
