// Adamax, Adam's infinity-norm variant (Kingma & Ba 2015, section 7; torch.optim.Adamax).
//
//   g ← ±g + λ·p
//   m ← β1·m + (1 − β1)·g
//   u ← max(β2·u, |g| + ε)
//   p ← p − γ/(1 − β1ᵗ) · m / u
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adamax's hyper-parameters, set by name from torch.optim.Adamax's defaults: `Adamax::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdamaxHyper {
    double lr = 2e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr AdamaxHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adamax's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdamaxCoeffs {
    T grad_sign, weight_decay, beta1, one_minus_beta1, beta2, eps, step_size;
};

FASTOPTIM_TARGET_BEGIN

struct Adamax : RuleBase {
    static constexpr const char* name = "adamax";
    using Hyper = AdamaxHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"exp_avg"}, nonnegative_slot("exp_inf")}};
    template <class T>
    using Coeffs = AdamaxCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        return {h.maximize != 0 ? T(-1) : T(1), T(h.weight_decay), T(h.beta1), T(1.0 - h.beta1), T(h.beta2),
                T(h.eps), T(h.lr / (1.0 - std::pow(h.beta1, double(clock.step))))};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V m = V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g;
        const V u = maximum(V(c.beta2) * load_state<V>(a, 1, i), abs(g) + V(c.eps));
        store_state(a, 0, i, m);
        store_state(a, 1, i, u);
        store_param(a, i, p - V(c.step_size) * m / u);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
