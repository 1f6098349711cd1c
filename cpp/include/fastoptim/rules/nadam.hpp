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

#include "moments.hpp"

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
    static constexpr double scalar_low[1] = {0.0};  // a product of μ_t in [0, β1]
    static constexpr double scalar_high[1] = {1.0};
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay, momentum_decay, decoupled, maximize;
    };
    template <class T>
    struct Coeffs {
        Moments<T> moments;
        T inv_bias2, eps, grad_step, avg_step;
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
        Coeffs<T> c;
        c.moments = Moments<T>::fold(h.lr, h.beta1, h.beta2, h.weight_decay, h.decoupled != 0, h.maximize != 0);
        c.inv_bias2 = T(1.0 / (1.0 - std::pow(h.beta2, t)));
        c.eps = T(h.eps);
        c.grad_step = T(h.lr * (1.0 - mu_t) / (1.0 - product));
        c.avg_step = T(h.lr * mu_next / (1.0 - product * mu_next));
        return c;
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p, g, m, v;
        c.moments.advance(a, i, p, g, m, v);
        const V d = sqrt(v * V(c.inv_bias2)) + V(c.eps);
        (p - V(c.grad_step) * g / d - V(c.avg_step) * m / d).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
