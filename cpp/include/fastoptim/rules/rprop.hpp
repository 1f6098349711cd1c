// Rprop (Riedmiller & Braun 1993; torch.optim.Rprop), for full-batch training.
//
//   g ← ±g;  s = g·g_prev
//   η ← η₊ where s > 0, η₋ where s < 0, 1 where s = 0
//   Δ ← clamp(Δ·η, Δ_min, Δ_max)                 (Δ starts at lr)
//   g ← 0 where s < 0;  p ← p − sign(g)·Δ;  g_prev ← g
#pragma once

#include <array>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Rprop's hyper-parameters, set by name from torch.optim.Rprop's defaults: `Rprop::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct RpropHyper {
    double lr = 1e-2;
    double eta_minus = 0.5;
    double eta_plus = 1.2;
    double step_size_min = 1e-6;
    double step_size_max = 50.0;
    double maximize = 0.0;
    constexpr RpropHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Rprop's fold computes once per step and every element's update reads (plain data).
template <class T>
struct RpropCoeffs {
    T lr, eta_minus, eta_plus, step_min, step_max, grad_sign;
    bool fresh;
};

FASTOPTIM_TARGET_BEGIN

struct Rprop : RuleBase {
    static constexpr const char* name = "rprop";
    using Hyper = RpropHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, eta_minus, "etas[0]", open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eta_plus, "etas[1]", above(1.0)),
        FASTOPTIM_FIELD(Hyper, step_size_min, "step_sizes[0]", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, step_size_max, "step_sizes[1]", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"prev", nullptr, true}, nonnegative_slot("step_size", nullptr, true)}};
    template <class T>
    using Coeffs = RpropCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        return {T(h.lr), T(h.eta_minus), T(h.eta_plus), T(h.step_size_min), T(h.step_size_max),
                h.maximize != 0 ? T(-1) : T(1), clock.fresh};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V zero(T(0)), one(T(1));
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        const V prev = c.fresh ? zero : load_state<V>(a, 0, i);
        const V agree = g * prev;
        // torch multiplies by sign(g·g_prev) mapped to the etas: NaN stays NaN
        const V factor = select(agree > zero, V(c.eta_plus),
                                select(agree < zero, V(c.eta_minus), select(is_nan(agree), agree, one)));
        const V step = clamp((c.fresh ? V(c.lr) : load_state<V>(a, 1, i)) * factor, V(c.step_min), V(c.step_max));
        g = select(agree < zero, zero, g);
        store_state(a, 1, i, step);
        store_state(a, 0, i, g);
        store_param(a, i, load_param<V>(a, i) - sign(g) * step);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
