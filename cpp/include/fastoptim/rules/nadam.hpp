// NAdam, Adam with Nesterov momentum (Dozat 2016; torch.optim.NAdam), with torch's momentum
// schedule μ_t = β1·(1 − 0.5·0.96^(t·ψ)) and its running product (a per-group scalar).
//
//   g ← ±g (+ λ·p, or p ← p·(1 − γλ) with decoupled weight decay)
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
//   d = sqrt(v / (1 − β2ᵗ)) + ε
//   p ← p − γ(1 − μ_t)/(1 − Πμ) · g/d − γ·μ_{t+1}/(1 − Πμ·μ_{t+1}) · m/d
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Nadam : RuleBase {
    static constexpr const char* name = "nadam";
    static constexpr std::array<const char*, 8> fields = {
        "lr", "beta1", "beta2", "eps", "weight_decay", "momentum_decay", "decoupled", "maximize"};
    static constexpr int slots = 2;  // exp_avg, exp_avg_sq
    static constexpr int scalars = 1;
    static constexpr const char* scalar_names[1] = {"mu_product"};
    static constexpr double scalar_init[1] = {1.0};
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay, momentum_decay, decoupled, maximize;
    };
    template <class T>
    struct Coeffs {
        T grad_sign, l2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias2, eps, grad_step, avg_step;
        bool decays;
    };

    static double mu(const Hyper& h, double t) { return h.beta1 * (1.0 - 0.5 * std::pow(0.96, t * h.momentum_decay)); }

    // Πμ over the steps so far: advanced once per step, before fold reads it.
    static void advance(const Hyper& h, const Clock& clock, double* scalars) {
        scalars[0] *= mu(h, double(clock.step));
    }

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step), product = clock.scalars[0];
        const double mu_t = mu(h, t), mu_next = mu(h, t + 1.0);
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
        c.inv_bias2 = T(1.0 / (1.0 - std::pow(h.beta2, t)));
        c.eps = T(h.eps);
        c.grad_step = T(h.lr * (1.0 - mu_t) / (1.0 - product));
        c.avg_step = T(h.lr * mu_next / (1.0 - product * mu_next));
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
        const V d = sqrt(v * V(c.inv_bias2)) + V(c.eps);
        (p - V(c.grad_step) * g / d - V(c.avg_step) * m / d).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
