"""Independent float64 references of every update rule, written from the formulas.

Each takes the parameter p (float64, updated in place), the gradient g, the state dict st
(filled lazily, as torch does), the group's hyper-parameters hp and the step t (1 on the first
step). They share no code with fastoptim.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

Array = np.ndarray
Hyper = dict[str, Any]


def _caution(u: Array, g: Array) -> Array:
    """Cautious updates (Liang et al. 2024, "Cautious Optimizers"): the components of the
    direction u whose sign disagrees with the gradient g dropped, the rest scaled by the array's
    n elements over the k + 1 kept: u·[u·g > 0]·n/(k + 1). A NaN u stays NaN."""
    agree = u * g > 0
    return u * agree * (u.size / (np.count_nonzero(agree) + 1))


def _as_is(u: Array, g: Array) -> Array:
    return u


def sgd(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int, caution: Callable[..., Array] = _as_is) -> None:
    g = -g if hp["maximize"] else g.copy()
    if hp["weight_decay"]:
        g = g + hp["weight_decay"] * p
    mu = hp["momentum"]
    if mu:  # without momentum there is no caution
        b = g.copy() if "momentum_buffer" not in st else mu * st["momentum_buffer"] + (1 - hp["dampening"]) * g
        st["momentum_buffer"] = b
        g = caution(g + mu * b if hp["nesterov"] else b, g)
    p -= hp["lr"] * g


def sgd_cautious(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """SGD with the momentum's direction (after the sign and the L2 term) masked against g."""
    sgd(p, g, st, hp, t, _caution)


def sgdw(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int, caution: Callable[..., Array] = _as_is) -> None:
    """SGD with the weight decay taken out of the gradient and applied to the weights first."""
    p *= 1 - hp["lr"] * hp["weight_decay"]
    sgd(p, g, st, {**hp, "weight_decay": 0.0}, t, caution)


def sgdw_cautious(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    sgdw(p, g, st, hp, t, _caution)


def adam(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int, caution: Callable[..., Array] = _as_is) -> None:
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
    p -= lr / (1 - b1**t) * caution(m, g) / (np.sqrt(v_hat) / np.sqrt(1 - b2**t) + eps)


def adam_cautious(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """Adam (and AdamW) with m masked against g (after the sign and Adam's L2 term)."""
    adam(p, g, st, hp, t, _caution)


def _signed(g: Array, hp: Hyper) -> Array:
    return -g if hp.get("maximize", False) else g


def _l2(g: Array, p: Array, hp: Hyper) -> Array:
    return g + hp["weight_decay"] * p if hp["weight_decay"] else g


def adagrad(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    g = _l2(_signed(g, hp), p, hp)
    s = st.get("sum", np.full_like(p, hp["initial_accumulator_value"])) + g * g
    st["sum"] = s
    p -= hp["lr"] / (1 + (t - 1) * hp["lr_decay"]) * g / (np.sqrt(s) + hp["eps"])


def adadelta(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    rho, eps = hp["rho"], hp["eps"]
    g = _l2(_signed(g, hp), p, hp)
    s = rho * st.get("square_avg", np.zeros_like(p)) + (1 - rho) * g * g
    u = st.get("acc_delta", np.zeros_like(p))
    delta = np.sqrt(u + eps) / np.sqrt(s + eps) * g
    st["square_avg"], st["acc_delta"] = s, rho * u + (1 - rho) * delta * delta
    p -= hp["lr"] * delta


def rmsprop(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    alpha, mu = hp["alpha"], hp["momentum"]
    g = _l2(_signed(g, hp), p, hp)
    s = alpha * st.get("square_avg", np.zeros_like(p)) + (1 - alpha) * g * g
    st["square_avg"] = s
    if hp["centered"]:
        mean = alpha * st.get("grad_avg", np.zeros_like(p)) + (1 - alpha) * g
        st["grad_avg"] = mean
        s = s - mean * mean
    u = g / (np.sqrt(s) + hp["eps"])
    if mu > 0:
        b = mu * st.get("momentum_buffer", np.zeros_like(p)) + u
        st["momentum_buffer"] = b
        u = u + mu * b if hp.get("nesterov", False) else b
    p -= hp["lr"] * u


def rprop(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    (eta_minus, eta_plus), (low, high) = hp["etas"], hp["step_sizes"]
    g = _signed(g, hp)
    prev = st.get("prev", np.zeros_like(p))
    step = st.get("step_size", np.full_like(p, hp["lr"]))
    agree = g * prev
    factor = np.where(agree > 0, eta_plus, np.where(agree < 0, eta_minus, np.where(np.isnan(agree), agree, 1.0)))
    step = np.clip(step * factor, low, high)
    g = np.where(agree < 0, 0.0, g)
    st["prev"], st["step_size"] = g, step
    p -= np.sign(g) * step


def adamax(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    (b1, b2), eps = hp["betas"], hp["eps"]
    g = _l2(_signed(g, hp), p, hp)
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    u = np.maximum(b2 * st.get("exp_inf", np.zeros_like(p)), np.abs(g) + eps)
    st["exp_avg"], st["exp_inf"] = m, u
    p -= hp["lr"] / (1 - b1**t) * m / u


def _decay_or_l2(p: Array, g: Array, hp: Hyper) -> Array:
    if hp["decoupled_weight_decay"]:
        p *= 1 - hp["lr"] * hp["weight_decay"]
        return g
    return _l2(g, p, hp)


def nadam(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    lr, (b1, b2), eps, psi = hp["lr"], hp["betas"], hp["eps"], hp["momentum_decay"]
    g = _decay_or_l2(p, _signed(g, hp), hp)
    mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    product = st.get("mu_product", 1.0) * mu
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"], st["mu_product"] = m, v, product
    d = np.sqrt(v / (1 - b2**t)) + eps
    p -= lr * (1 - mu) / (1 - product) * g / d
    p -= lr * mu_next / (1 - product * mu_next) * m / d


def radam(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    lr, (b1, b2), eps = hp["lr"], hp["betas"], hp["eps"]
    g = _decay_or_l2(p, _signed(g, hp), hp)
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    m_hat = m / (1 - b1**t)
    if rho_t > 5:
        r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        p -= lr * r * m_hat * np.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
    else:
        p -= lr * m_hat


def adabound(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    lr, (b1, b2), eps, gamma = hp["lr"], hp["betas"], hp["eps"], hp["gamma"]
    g = _l2(g, p, hp)
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    if hp["amsbound"]:
        v = np.maximum(st.get("max_exp_avg_sq", np.zeros_like(p)), v)
        st["max_exp_avg_sq"] = v
    final_lr = hp["final_lr"] * lr / hp["initial_lr"]
    lower, upper = final_lr * (1 - 1 / (gamma * t + 1)), final_lr * (1 + 1 / (gamma * t))
    step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    p -= np.clip(step_size / (np.sqrt(v) + eps), lower, upper) * m


def lamb(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    lr, (b1, b2), eps = hp["lr"], hp["betas"], hp["eps"]
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + hp["weight_decay"] * p
    p_norm, r_norm = np.linalg.norm(p.ravel()), np.linalg.norm(r.ravel())
    trust = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
    p -= lr * trust * r


def lars(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    wd = hp["weight_decay"]
    w_norm, g_norm = np.linalg.norm(p.ravel()), np.linalg.norm(g.ravel())
    local = hp["trust_coefficient"] * w_norm / (g_norm + wd * w_norm) if w_norm > 0 and g_norm > 0 else 1.0
    v = hp["momentum"] * st.get("momentum_buffer", np.zeros_like(p)) + hp["lr"] * local * (g + wd * p)
    st["momentum_buffer"] = v
    p -= v


def lion(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int, caution: Callable[..., Array] = _as_is) -> None:
    lr, (b1, b2) = hp["lr"], hp["betas"]
    g = _signed(g, hp)
    m = st.get("exp_avg", np.zeros_like(p))
    p -= lr * (caution(np.sign(b1 * m + (1 - b1) * g), g) + hp["weight_decay"] * p)
    st["exp_avg"] = b2 * m + (1 - b2) * g


def lion_cautious(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """Lion with sign(c) masked against g."""
    lion(p, g, st, hp, t, _caution)


def _lerp(a: Array, b: Array, w: float) -> Array:
    """torch.lerp's a + w(b - a), evaluated from b's end when |w| >= 0.5 (so w = 1 gives b exactly)."""
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1 - w)


def _schedule_free_weights(st: dict[str, Any], hp: Hyper, t: int) -> tuple[float, float]:
    """Schedule-free's warmed-up lr and interpolation weight c of step t (Defazio et al. 2024,
    Algorithm 1 with lr-power weighting); lr_max and weight_sum run in st."""
    warmup = hp["warmup_steps"]
    lr = hp["lr"] * (t / warmup if t <= warmup else 1.0)
    st["lr_max"] = lr_max = max(st.get("lr_max", -1.0), lr)
    weight = t ** hp["r"] * lr_max ** hp["weight_lr_power"]
    st["weight_sum"] = st.get("weight_sum", 0.0) + weight
    return lr, weight / st["weight_sum"] if st["weight_sum"] else 0.0


def _schedule_free(p: Array, u: Array, st: dict[str, Any], lr: float, c: float, b1: float) -> None:
    """y <- (1-c) y + c z - lr (1 - b1 (1-c)) u and z <- z - lr u, for p = y in train mode."""
    z = st["z"]
    p[...] = _lerp(p, z, c)
    p += lr * (b1 * (1 - c) - 1) * u
    z -= lr * u


def schedule_free_adamw(p: Array, g: Array, st: dict[str, Any], hp: Hyper, t: int) -> None:
    (b1, b2), eps = hp["betas"], hp["eps"]
    g = _signed(g, hp)
    st.setdefault("z", p.copy())
    lr, c = _schedule_free_weights(st, hp, t)
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg_sq"] = v
    u = g / (np.sqrt(v / (1 - b2**t)) + eps) + hp["weight_decay"] * p
    _schedule_free(p, u, st, lr, c, b1)


def schedule_free_sgd(p: Array, g: Array, st: dict[str, Any], hp: Hyper, t: int) -> None:
    st.setdefault("z", p.copy())
    lr, c = _schedule_free_weights(st, hp, t)
    _schedule_free(p, _signed(g, hp) + hp["weight_decay"] * p, st, lr, c, hp["momentum"])


def schedule_free_switch(p: Array, st: dict[str, Any], beta: float, train: bool) -> None:
    """Schedule-free's train() (p <- lerp(p, z, 1 - beta)) or eval() (p <- lerp(p, z, 1 - 1/beta))."""
    p[...] = _lerp(p, st["z"], 1 - beta if train else 1 - 1 / beta)


def adopt(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """ADOPT (Taniguchi et al. 2024, Algorithm 2 with clipping): the step normalizes g by the
    second moment of the previous steps, which step 1 only initializes."""
    lr, (b1, b2), wd = hp["lr"], hp["betas"], hp["weight_decay"]
    g = _signed(g, hp)
    if hp["weight_decouple"]:
        p *= 1 - wd * (1.0 if hp["fixed_decay"] else lr)
    else:
        g = _l2(g, p, hp)
    if t == 1:
        st["exp_avg"], st["exp_avg_sq"] = np.zeros_like(p), g * g
        return
    v = st["exp_avg_sq"]
    clip = t ** hp["clip_exponent"]
    n = np.clip(g / np.maximum(np.sqrt(v), hp["eps"]), -clip, clip)
    m = _lerp(st["exp_avg"], n, 1 - b1)
    p -= lr * m
    st["exp_avg"], st["exp_avg_sq"] = m, b2 * v + (1 - b2) * g * g


def adan(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """Adan (Xie et al. 2022, Algorithm 1 as optax writes it: bias-corrected moments, decay
    added to the update)."""
    lr, (b1, b2, b3) = hp["lr"], hp["betas"]
    g = _signed(g, hp)
    diff = np.zeros_like(g) if t == 1 else g - st["prev_grad"]
    m = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_diff", np.zeros_like(p)) + (1 - b2) * diff
    n = b3 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b3) * (g + (1 - b2) * diff) ** 2
    st["exp_avg"], st["exp_avg_diff"], st["exp_avg_sq"], st["prev_grad"] = m, v, n, g.copy()
    u = (m / (1 - b1**t) + (1 - b2) * v / (1 - b2**t)) / (np.sqrt(n / (1 - b3**t) + hp["eps_root"]) + hp["eps"])
    p -= lr * (u + hp["weight_decay"] * p)


def ademamix(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int,
             caution: Callable[..., Array] = _as_is) -> None:
    """AdEMAMix (Pagliardini et al. 2024, Algorithm 1), with its α and β3 warmup schedulers
    over t_alpha_beta3 steps when that is set (> 0); from step t_alpha_beta3 on, α and β3 themselves."""
    lr, (b1, b2, b3), alpha, warmup = hp["lr"], hp["betas"], hp["alpha"], hp["t_alpha_beta3"]
    if warmup and t < warmup:
        s = t / warmup
        alpha = min(s * alpha, alpha)
        b3 = min(math.exp(math.log(b1) * math.log(b3) / ((1 - s) * math.log(b3) + s * math.log(b1))), b3)
    g = _signed(g, hp)
    m1 = b1 * st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * g
    m2 = b3 * st.get("exp_avg_slow", np.zeros_like(p)) + (1 - b3) * g
    v = b2 * st.get("exp_avg_sq", np.zeros_like(p)) + (1 - b2) * g * g
    st["exp_avg"], st["exp_avg_slow"], st["exp_avg_sq"] = m1, m2, v
    u = (caution(m1, g) / (1 - b1**t) + alpha * m2) / (np.sqrt(v / (1 - b2**t)) + hp["eps"])
    p -= lr * (u + hp["weight_decay"] * p)


def ademamix_cautious(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """AdEMAMix with the fast EMA m1 alone masked against g, as pytorch_optimizer.AdEMAMix(cautious=True)."""
    ademamix(p, g, st, hp, t, _caution)


def asgd(p: Array, g: Array, st: dict[str, Any], hp: Hyper, t: int) -> None:
    """Averaged SGD (Polyak & Juditsky 1992) as torch.optim.ASGD: eta and mu in st are those of
    the next step, eta_now and mu_now the ones this step used."""
    lr, lambd = hp["lr"], hp["lambd"]
    g = _l2(_signed(g, hp), p, hp)
    eta, mu = st.get("eta", lr), st.get("mu", 1.0)
    p *= 1 - lambd * eta
    p -= eta * g
    ax = st.get("ax", np.zeros_like(p))
    st["ax"] = p.copy() if mu == 1 else ax + mu * (p - ax)
    st["eta_now"], st["mu_now"] = eta, mu
    st["eta"] = lr / (1 + lambd * lr * t) ** hp["alpha"]
    st["mu"] = 1 / max(1.0, t - hp["t0"])



def _rms(x: Array) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def adafactor(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """Adafactor (Shazeer & Stern 2018) as torch.optim.Adafactor writes it: 1 − β2ₜ = t^τ
    (τ = beta2_decay), the relative step ρₜ = min(lr, 1/√t) scaled by max(ε2, RMS(p)) of the
    parameter before its decoupled decay p ← p(1 − lr·λ); the second moment of an array of two or
    more dimensions factored over its last two (batched over the others): R, the mean of g² along
    the last dimension, and C, along the one before, each an EMA, and V̂ = R·C / max(mean(R), ε1);
    of a vector or a scalar, the EMA of g² itself. U = g / max(√V̂, ε1), clipped to
    U / max(1, RMS(U)/d), over the whole array. eps is (ε1, ε2); ε1 None is float64's epsilon
    (a caller checking float32 passes float32's)."""
    lr, tau, (eps1, eps2), d, wd = hp["lr"], hp["beta2_decay"], hp["eps"], hp["d"], hp["weight_decay"]
    eps1 = float(np.finfo(np.float64).eps) if eps1 is None else eps1
    g = _signed(g, hp)
    weight = t**tau
    alpha = max(eps2, _rms(p)) * min(lr, 1 / t**0.5)
    p *= 1 - lr * wd
    if g.ndim >= 2:
        row = _lerp(st.get("row_var", np.zeros(g.shape[:-1] + (1,))), np.mean(g * g, axis=-1, keepdims=True), weight)
        col = _lerp(st.get("col_var", np.zeros(g.shape[:-2] + (1, g.shape[-1]))),
                    np.mean(g * g, axis=-2, keepdims=True), weight)
        st["row_var"], st["col_var"] = row, col
        v = row * col / np.maximum(np.mean(row, axis=-2, keepdims=True), eps1)
    else:
        v = _lerp(st.get("variance", np.zeros_like(p)), g * g, weight)
        st["variance"] = v
    u = g / np.sqrt(np.maximum(v, eps1 * eps1))
    p -= alpha / max(1.0, _rms(u) / d) * u


def newton_schulz(m: Array, coefficients: tuple[float, float, float], steps: int, eps: float) -> Array:
    """Muon's quintic Newton–Schulz iteration toward the orthogonal factor of m (2-D): X = m/‖m‖_F
    (the norm at least eps), transposed when m is tall, then `steps` times
    X ← aX + (bA + cA²)X with A = XXᵀ; in float64 (torch casts to bfloat16)."""
    a, b, c = coefficients
    x = m.T if m.shape[0] > m.shape[1] else m
    x = x / max(float(np.linalg.norm(x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if m.shape[0] > m.shape[1] else x


def muon_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """Muon's learning rate for an A×B matrix: lr·√max(1, A/B) (None, "original"), or
    0.2·lr·√max(A, B) ("match_rms_adamw")."""
    rows, cols = shape[:2]
    return lr * (0.2 * math.sqrt(max(rows, cols)) if adjust_lr_fn == "match_rms_adamw" else
                 math.sqrt(max(1.0, rows / cols)))


def muon(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
    """Muon (Jordan et al. 2024) as torch.optim.Muon: the buffer an EMA, B ← B + (1 − μ)(g − B)
    (torch's lerp), the direction g + μ(B − g) with nesterov else B, orthogonalized by
    newton_schulz; p ← p(1 − lr·λ) − muon_lr(lr)·O."""
    lr, mu = hp["lr"], hp["momentum"]
    buf = _lerp(st.get("momentum_buffer", np.zeros_like(p)), g, 1 - mu)
    st["momentum_buffer"] = buf
    direction = _lerp(g, buf, mu) if hp["nesterov"] else buf
    o = newton_schulz(direction, hp["ns_coefficients"], hp["ns_steps"], hp["eps"])
    p *= 1 - lr * hp["weight_decay"]
    p -= muon_lr(lr, hp["adjust_lr_fn"], p.shape) * o

def _row_gradient(p: Array, g: Array | tuple[Array, Array]) -> tuple[Array, Array]:
    """(rows, values) of a dense gradient (every row) or of (indices, values), duplicates summed:
    values as (rows given, row length), float64."""
    table = p.reshape(p.shape[0] if p.ndim else 1, -1)
    if not isinstance(g, tuple):
        return np.arange(table.shape[0]), np.asarray(g, np.float64).reshape(table.shape)
    indices, values = g
    rows = np.unique(indices)
    summed = np.zeros((len(rows), table.shape[1]))
    np.add.at(summed, np.searchsorted(rows, indices), np.asarray(values, np.float64).reshape(len(indices), -1))
    return rows, summed


def sparse_adam(p: Array, g: Array | tuple[Array, Array], st: dict[str, Array], hp: Hyper, t: int) -> None:
    """torch.optim.SparseAdam: Adam on the rows the gradient holds, the others untouched."""
    rows, g = _row_gradient(p, g)
    g = _signed(g, hp)
    table = p.reshape(len(p) if p.ndim else 1, -1)
    m = st.setdefault("exp_avg", np.zeros_like(table))
    v = st.setdefault("exp_avg_sq", np.zeros_like(table))
    b1, b2 = hp["betas"]
    m[rows] += (g - m[rows]) * (1 - b1)
    v[rows] += (g * g - v[rows]) * (1 - b2)
    table[rows] -= hp["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t) * m[rows] / (np.sqrt(v[rows]) + hp["eps"])


def rowwise_adagrad(p: Array, g: Array | tuple[Array, Array], st: dict[str, Array], hp: Hyper, t: int) -> None:
    """FBGEMM's row-wise Adagrad: one sum of mean squares per row (of the first dimension)."""
    rows, g = _row_gradient(p, g)
    table = p.reshape(len(p) if p.ndim else 1, -1)
    g = _signed(g, hp) + hp["weight_decay"] * table[rows]
    s = st.setdefault("sum", np.full(table.shape[0], hp["initial_accumulator_value"], np.float64))
    s[rows] += np.mean(g * g, axis=1) if g.shape[1] else 0.0
    clr = hp["lr"] / (1 + (t - 1) * hp["lr_decay"])
    table[rows] -= clr * g / (np.sqrt(s[rows])[:, None] + hp["eps"])


def lookahead(inner: Callable[..., None]) -> Callable[..., None]:
    """Lookahead around the reference `inner`: hp carries k and alpha beside inner's settings."""
    def rule(p: Array, g: Array, st: dict[str, Array], hp: Hyper, t: int) -> None:
        slow = st.setdefault("slow", p.copy())
        inner(p, g, st, hp, t)
        if t % hp["k"] == 0:
            slow += hp["alpha"] * (p - slow)
            p[...] = slow
    return rule


def run(rule: Callable[..., None], params: list[Array], grads_per_step: list[list[Array]], hp: Hyper) -> tuple[
        list[Array], list[dict[str, Array]]]:
    """Several steps of `rule` in float64 from the given starting values."""
    ps = [np.array(p, dtype=np.float64) for p in params]
    states: list[dict[str, Array]] = [{} for _ in ps]
    for t, grads in enumerate(grads_per_step, start=1):
        for p, g, st in zip(ps, grads, states):
            rule(p, np.asarray(g, dtype=np.float64), st, hp, t)
    return ps, states
