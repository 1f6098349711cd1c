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

// Nadam's hyper-parameters, set by name from torch.optim.NAdam's defaults: `Nadam::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct NadamHyper {
    double lr = 2e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double momentum_decay = 4e-3;
    double decoupled = 0.0;
    double maximize = 0.0;
    constexpr NadamHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Nadam's fold computes once per step and every element's update reads (plain data).
template <class T>
struct NadamCoeffs {
    Moments<T> moments;
    T inv_bias2, eps, grad_step, avg_step;
};

FASTOPTIM_TARGET_BEGIN

struct Nadam : RuleBase {
    static constexpr const char* name = "nadam";
    using Hyper = NadamHyper;
    static constexpr std::array<Field, 8> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, momentum_decay, "momentum_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, decoupled, "decoupled_weight_decay"),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq")}};
    static constexpr int scalars = 1;
    static constexpr const char* scalar_names[1] = {"mu_product"};
    static constexpr double scalar_init[1] = {1.0};
    static constexpr double scalar_low[1] = {0.0};  // a product of μ_t in [0, β1]
    static constexpr double scalar_high[1] = {1.0};
    template <class T>
    using Coeffs = NadamCoeffs<T>;

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
        c.moments = fold_moments<T>(h.lr, h.beta1, h.beta2, h.weight_decay, h.decoupled != 0, h.maximize != 0);
        c.inv_bias2 = T(1.0 / (1.0 - std::pow(h.beta2, t)));
        c.eps = T(h.eps);
        c.grad_step = T(h.lr * (1.0 - mu_t) / (1.0 - product));
        c.avg_step = T(h.lr * mu_next / (1.0 - product * mu_next));
        return c;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p, g, m, v;
        advance_moments(c.moments, a, i, p, g, m, v);
        const V d = sqrt(v * V(c.inv_bias2)) + V(c.eps);
        store_param(a, i, p - V(c.grad_step) * g / d - V(c.avg_step) * m / d);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
