// AdEMAMix, a mixture of two EMAs of the gradient (Pagliardini et al. 2024, "The AdEMAMix
// Optimizer: Better, Faster, Older"), as optax.contrib.ademamix with the paper's warmups of α
// and β3 over t_alpha_beta3 steps; torch has no twin.
//
//   α_t = min(t·α/T, α);   β3_t = min(exp(ln β1·ln β3 / ((1 − t/T)·ln β3 + (t/T)·ln β1)), β3)
//                          (α and β3 themselves when T = 0, and from t = T on)
//   m1 ← β1·m1 + (1 − β1)·g;   m2 ← β3_t·m2 + (1 − β3_t)·g;   v ← β2·v + (1 − β2)·g²
//   p ← p − γ·((m1/(1 − β1ᵗ) + α_t·m2) / (sqrt(v/(1 − β2ᵗ)) + ε) + λ·p)
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

#include "../cautious.hpp"
#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Ademamix's hyper-parameters, from optax.contrib.ademamix's defaults: `Ademamix::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdemamixHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double beta3 = 0.9999;
    double alpha = 5.0;
    double t_alpha_beta3 = 0.0;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr AdemamixHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Ademamix's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdemamixCoeffs {
    T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, one_minus_beta3;
    T inv_bias1, inv_bias2, alpha, eps, weight_decay, grad_sign;
};

FASTOPTIM_TARGET_BEGIN

struct Ademamix : RuleBase {
    static constexpr const char* name = "ademamix";
    using Hyper = AdemamixHyper;
    static constexpr std::array<Field, 9> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", open(0.0, 1.0)),  // the β3 warmup takes ln β1
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta3, "betas[2]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, alpha, "alpha", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, t_alpha_beta3, "t_alpha_beta3", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 3> slots = {
        {{"exp_avg"}, nonnegative_slot("exp_avg_sq"), {"exp_avg_slow"}}};
    template <class T>
    using Coeffs = AdemamixCoeffs<T>;

    // The paper's schedulers (its reference code's alpha_scheduler and beta3_scheduler).
    // Past T both are their targets (the formula's pole lies past T when β1 > β3).
    static double alpha_at(const Hyper& h, double t) {
        return h.t_alpha_beta3 > 0 && t < h.t_alpha_beta3 ? t * h.alpha / h.t_alpha_beta3 : h.alpha;
    }
    static double beta3_at(const Hyper& h, double t) {
        if (h.t_alpha_beta3 <= 0 || t >= h.t_alpha_beta3 || h.beta3 == 0.0) return h.beta3;
        const double s = t / h.t_alpha_beta3, log1 = std::log(h.beta1), log3 = std::log(h.beta3);
        return std::min(std::exp(log1 * log3 / ((1.0 - s) * log3 + s * log1)), h.beta3);
    }

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step), beta3 = beta3_at(h, t);
        return {T(h.lr), T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(beta3), T(1.0 - beta3),
                T(1.0 / (1.0 - std::pow(h.beta1, t))), T(1.0 / (1.0 - std::pow(h.beta2, t))), T(alpha_at(h, t)),
                T(h.eps), T(h.weight_decay), h.maximize != 0 ? T(-1) : T(1)};
    }

    template <class V, class T, class A, class Caution = NoCaution>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i, const Caution& caution = {}) {
        const V p = load_param<V>(a, i), g = load_grad<V>(a, i) * V(c.grad_sign);
        const V m1 = V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g;
        const V v = V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * (g * g);
        const V m2 = V(c.beta3) * load_state<V>(a, 2, i) + V(c.one_minus_beta3) * g;
        store_state(a, 0, i, m1);
        store_state(a, 1, i, v);
        store_state(a, 2, i, m2);
        const V u = (caution(m1, g) * V(c.inv_bias1) + V(c.alpha) * m2) / (sqrt(v * V(c.inv_bias2)) + V(c.eps));
        store_param(a, i, p - V(c.lr) * (u + V(c.weight_decay) * p));
    }
};

// AdEMAMix with cautious updates: the mask of m1·g > 0 on the fast EMA only, as
// pytorch-optimizer's AdEMAMix(cautious=True).
struct AdemamixCautious : Cautious<Ademamix> {
    static constexpr const char* name = "ademamix_cautious";
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
