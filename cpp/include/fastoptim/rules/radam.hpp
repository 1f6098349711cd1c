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

#include "moments.hpp"

namespace fastoptim {

// Radam's hyper-parameters, set by name from torch.optim.RAdam's defaults: `Radam::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct RadamHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double decoupled = 0.0;
    double maximize = 0.0;
    constexpr RadamHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Radam's fold computes once per step and every element's update reads (plain data).
template <class T>
struct RadamCoeffs {
    Moments<T> moments;
    T eps, step_size;
    bool rectified;
};

FASTOPTIM_TARGET_BEGIN

struct Radam : RuleBase {
    static constexpr const char* name = "radam";
    using Hyper = RadamHyper;
    static constexpr std::array<Field, 7> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, decoupled, "decoupled_weight_decay"),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq")}};
    template <class T>
    using Coeffs = RadamCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const double bias1 = 1.0 - std::pow(h.beta1, t), beta2_t = std::pow(h.beta2, t), bias2 = 1.0 - beta2_t;
        const double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
        const double rho_t = rho_inf - 2.0 * t * beta2_t / bias2;
        Coeffs<T> c;
        c.moments = fold_moments<T>(h.lr, h.beta1, h.beta2, h.weight_decay, h.decoupled != 0, h.maximize != 0);
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

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p, g, m, v;
        advance_moments(c.moments, a, i, p, g, m, v);
        const V step = c.rectified ? V(c.step_size) * m / (sqrt(v) + V(c.eps)) : V(c.step_size) * m;
        store_param(a, i, p - step);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
