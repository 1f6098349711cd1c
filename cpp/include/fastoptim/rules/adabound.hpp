// AdaBound and AMSBound (Luo et al. 2019, following the authors' reference code; torch has no twin).
//
//   g ← g + λ·p
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;   v̂ ← max(v̂, v) with amsbound, else v
//   α = γ·sqrt(1 − β2ᵗ)/(1 − β1ᵗ);   f = final_lr·γ/γ₀   (γ₀: the group's initial lr)
//   lower = f·(1 − 1/(ζt + 1)),  upper = f·(1 + 1/(ζt))      (ζ = gamma)
//   p ← p − clamp(α/(sqrt(v̂) + ε), lower, upper)·m
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adabound's hyper-parameters, set by name from Luo et al.'s reference AdaBound's defaults: `Adabound::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdaboundHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double final_lr = 0.1;
    double gamma = 1e-3;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double amsbound = 0.0;
    double initial_lr = 1e-3;
    constexpr AdaboundHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adabound's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdaboundCoeffs {
    T weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, lower, upper;
    bool amsbound;
};

FASTOPTIM_TARGET_BEGIN

struct Adabound : RuleBase {
    static constexpr const char* name = "adabound";
    using Hyper = AdaboundHyper;
    static constexpr std::array<Field, 9> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, final_lr, "final_lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, gamma, "gamma", open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, amsbound, "amsbound"),
        FASTOPTIM_FIELD_OR(Hyper, initial_lr, "initial_lr", above(0.0), "lr"),
    }};
    static constexpr std::array<Slot, 3> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq"), nonnegative_slot("max_exp_avg_sq", "amsbound")}};
    template <class T>
    using Coeffs = AdaboundCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const double bias1 = 1.0 - std::pow(h.beta1, t), bias2 = 1.0 - std::pow(h.beta2, t);
        const double final_lr = h.final_lr * h.lr / h.initial_lr;
        Coeffs<T> c;
        c.weight_decay = T(h.weight_decay);
        c.beta1 = T(h.beta1);
        c.one_minus_beta1 = T(1.0 - h.beta1);
        c.beta2 = T(h.beta2);
        c.one_minus_beta2 = T(1.0 - h.beta2);
        c.eps = T(h.eps);
        c.step_size = T(h.lr * std::sqrt(bias2) / bias1);
        c.lower = T(final_lr * (1.0 - 1.0 / (h.gamma * t + 1.0)));
        c.upper = T(final_lr * (1.0 + 1.0 / (h.gamma * t)));
        c.amsbound = h.amsbound != 0;
        return c;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V m = V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g;
        const V v = V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * (g * g);
        store_state(a, 0, i, m);
        store_state(a, 1, i, v);
        V v_hat = v;
        if (c.amsbound) {
            v_hat = maximum(load_state<V>(a, 2, i), v);
            store_state(a, 2, i, v_hat);
        }
        const V rate = clamp(V(c.step_size) / (sqrt(v_hat) + V(c.eps)), V(c.lower), V(c.upper));
        store_param(a, i, p - rate * m);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
