// Adadelta (Zeiler 2012; torch.optim.Adadelta).
//
//   g ← ±g + λ·p
//   s ← ρ·s + (1 − ρ)·g²
//   Δ ← sqrt(u + ε) / sqrt(s + ε) · g
//   u ← ρ·u + (1 − ρ)·Δ²
//   p ← p − γ·Δ
#pragma once

#include <array>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adadelta's hyper-parameters, set by name from torch.optim.Adadelta's defaults: `Adadelta::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdadeltaHyper {
    double lr = 1.0;
    double rho = 0.9;
    double eps = 1e-6;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr AdadeltaHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adadelta's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdadeltaCoeffs {
    T lr, rho, one_minus_rho, eps, weight_decay, grad_sign;
};

FASTOPTIM_TARGET_BEGIN

struct Adadelta : RuleBase {
    static constexpr const char* name = "adadelta";
    using Hyper = AdadeltaHyper;
    static constexpr std::array<Field, 5> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, rho, "rho", closed(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{nonnegative_slot("square_avg"), nonnegative_slot("acc_delta")}};
    template <class T>
    using Coeffs = AdadeltaCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.rho), T(1.0 - h.rho), T(h.eps), T(h.weight_decay), h.maximize != 0 ? T(-1) : T(1)};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V s = V(c.rho) * load_state<V>(a, 0, i) + V(c.one_minus_rho) * (g * g);
        const V u = load_state<V>(a, 1, i);
        const V delta = sqrt(u + V(c.eps)) / sqrt(s + V(c.eps)) * g;
        store_state(a, 0, i, s);
        store_state(a, 1, i, V(c.rho) * u + V(c.one_minus_rho) * (delta * delta));
        store_param(a, i, p - V(c.lr) * delta);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
