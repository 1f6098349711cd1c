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
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Adabound : RuleBase {
    static constexpr const char* name = "adabound";
    static constexpr std::array<const char*, 9> fields = {
        "lr", "beta1", "beta2", "final_lr", "gamma", "eps", "weight_decay", "amsbound", "initial_lr"};
    static constexpr int slots = 3;  // exp_avg, exp_avg_sq, max_exp_avg_sq
    struct Hyper {
        double lr, beta1, beta2, final_lr, gamma, eps, weight_decay, amsbound, initial_lr;
    };
    template <class T>
    struct Coeffs {
        T weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, lower, upper;
        bool amsbound;
    };

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

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V m = V(c.beta1) * V::load(a.state[0] + i) + V(c.one_minus_beta1) * g;
        const V v = V(c.beta2) * V::load(a.state[1] + i) + V(c.one_minus_beta2) * (g * g);
        m.store(a.state[0] + i);
        v.store(a.state[1] + i);
        V v_hat = v;
        if (c.amsbound) {
            v_hat = maximum(V::load(a.state[2] + i), v);
            v_hat.store(a.state[2] + i);
        }
        const V rate = clamp(V(c.step_size) / (sqrt(v_hat) + V(c.eps)), V(c.lower), V(c.upper));
        (p - rate * m).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
