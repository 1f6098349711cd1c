// Adan, adaptive Nesterov momentum (Xie et al. 2022, "Adan: Adaptive Nesterov Momentum
// Algorithm for Faster Optimizing Deep Models", Algorithm 1), as optax.adan; torch has no twin.
//
//   d = g − g_prev (0 on the first step);  g_prev ← g
//   m ← β1·m + (1 − β1)·g;   s ← β2·s + (1 − β2)·d;   n ← β3·n + (1 − β3)·(g + (1 − β2)·d)²
//   u = (m/(1 − β1ᵗ) + (1 − β2)·s/(1 − β2ᵗ)) / (sqrt(n/(1 − β3ᵗ) + ε_root) + ε)
//   p ← p − γ·(u + λ·p)
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adan's hyper-parameters, from optax.adan's defaults: `Adan::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdanHyper {
    double lr = 1e-3;
    double beta1 = 0.98;
    double beta2 = 0.92;
    double beta3 = 0.99;
    double eps = 1e-8;
    double eps_root = 1e-8;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr AdanHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adan's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdanCoeffs {
    T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, one_minus_beta3;
    T inv_bias1, inv_bias2, inv_bias3, eps, eps_root, weight_decay, grad_sign;
    bool first;  // a fresh state: no previous gradient, d = 0
};

FASTOPTIM_TARGET_BEGIN

struct Adan : RuleBase {
    static constexpr const char* name = "adan";
    using Hyper = AdanHyper;
    static constexpr std::array<Field, 8> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta3, "betas[2]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, eps_root, "eps_root", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 4> slots = {
        {{"exp_avg"}, {"exp_avg_diff"}, nonnegative_slot("exp_avg_sq"), {"prev_grad", nullptr, true}}};
    template <class T>
    using Coeffs = AdanCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        return {T(h.lr), T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(h.beta3), T(1.0 - h.beta3),
                T(1.0 / (1.0 - std::pow(h.beta1, t))), T(1.0 / (1.0 - std::pow(h.beta2, t))),
                T(1.0 / (1.0 - std::pow(h.beta3, t))), T(h.eps), T(h.eps_root), T(h.weight_decay),
                h.maximize != 0 ? T(-1) : T(1), clock.fresh};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V p = load_param<V>(a, i), g = load_grad<V>(a, i) * V(c.grad_sign);
        const V d = c.first ? V(T(0)) : g - load_state<V>(a, 3, i);
        const V m = store_state(a, 0, i, V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g);
        const V s = store_state(a, 1, i, V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * d);
        const V q = g + V(c.one_minus_beta2) * d;
        const V n = store_state(a, 2, i, V(c.beta3) * load_state<V>(a, 2, i) + V(c.one_minus_beta3) * (q * q));
        store_state(a, 3, i, g);
        const V u = (m * V(c.inv_bias1) + V(c.one_minus_beta2) * (s * V(c.inv_bias2))) /
                    (sqrt(n * V(c.inv_bias3) + V(c.eps_root)) + V(c.eps));
        store_param(a, i, p - V(c.lr) * (u + V(c.weight_decay) * p));
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
