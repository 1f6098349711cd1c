// RAdam, rectified Adam (Liu et al. 2020; torch.optim.RAdam).
//
//   g ← ±g (+ λ·p, or p ← p·(1 − γλ) with decoupled weight decay)
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
//   ρ∞ = 2/(1 − β2) − 1;   ρ_t = ρ∞ − 2t·β2ᵗ/(1 − β2ᵗ)
//   ρ_t > 5:  r = sqrt((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t))
//             p ← p − γ·r·sqrt(1 − β2ᵗ)/(1 − β1ᵗ) · m / (sqrt(v) + ε)
//   else:     p ← p − γ/(1 − β1ᵗ) · m
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Radam : RuleBase {
    static constexpr const char* name = "radam";
    static constexpr std::array<const char*, 7> fields = {
        "lr", "beta1", "beta2", "eps", "weight_decay", "decoupled", "maximize"};
    static constexpr int slots = 2;  // exp_avg, exp_avg_sq
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay, decoupled, maximize;
    };
    template <class T>
    struct Coeffs {
        T grad_sign, l2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size;
        bool decays, rectified;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const double bias1 = 1.0 - std::pow(h.beta1, t), beta2_t = std::pow(h.beta2, t), bias2 = 1.0 - beta2_t;
        const double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
        const double rho_t = rho_inf - 2.0 * t * beta2_t / bias2;
        const bool decoupled = h.decoupled != 0;
        Coeffs<T> c;
        c.grad_sign = h.maximize != 0 ? T(-1) : T(1);
        c.l2 = decoupled ? T(0) : T(h.weight_decay);
        c.decay = T(1.0 - h.lr * h.weight_decay);
        c.decays = decoupled && h.weight_decay != 0;
        c.beta1 = T(h.beta1);
        c.one_minus_beta1 = T(1.0 - h.beta1);
        c.beta2 = T(h.beta2);
        c.one_minus_beta2 = T(1.0 - h.beta2);
        c.eps = T(h.eps);
        c.rectified = rho_t > 5.0;
        if (c.rectified) {
            const double r = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
            c.step_size = T(h.lr * r * std::sqrt(bias2) / bias1);
        } else {
            c.step_size = T(h.lr / bias1);
        }
        return c;
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.decays) p = p * V(c.decay);
        if (c.l2 != T(0)) g = g + V(c.l2) * p;
        const V m = V(c.beta1) * V::load(a.state[0] + i) + V(c.one_minus_beta1) * g;
        const V v = V(c.beta2) * V::load(a.state[1] + i) + V(c.one_minus_beta2) * (g * g);
        m.store(a.state[0] + i);
        v.store(a.state[1] + i);
        const V step = c.rectified ? V(c.step_size) * m / (sqrt(v) + V(c.eps)) : V(c.step_size) * m;
        (p - step).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
