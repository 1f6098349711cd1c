// Rprop (Riedmiller & Braun 1993; torch.optim.Rprop), for full-batch training.
//
//   g ← ±g;  s = g·g_prev
//   η ← η₊ where s > 0, η₋ where s < 0, 1 where s = 0
//   Δ ← clamp(Δ·η, Δ_min, Δ_max)                 (Δ starts at lr)
//   g ← 0 where s < 0;  p ← p − sign(g)·Δ;  g_prev ← g
#pragma once

#include <array>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Rprop : RuleBase {
    static constexpr const char* name = "rprop";
    static constexpr std::array<const char*, 6> fields = {
        "lr", "eta_minus", "eta_plus", "step_size_min", "step_size_max", "maximize"};
    static constexpr int slots = 2;  // prev, step_size
    struct Hyper {
        double lr, eta_minus, eta_plus, step_size_min, step_size_max, maximize;
    };
    template <class T>
    struct Coeffs {
        T lr, eta_minus, eta_plus, step_min, step_max, grad_sign;
        bool fresh;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        return {T(h.lr), T(h.eta_minus), T(h.eta_plus), T(h.step_size_min), T(h.step_size_max),
                h.maximize != 0 ? T(-1) : T(1), clock.fresh};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        const V zero(T(0)), one(T(1));
        V g = V::load(a.grad + i) * V(c.grad_sign);
        const V prev = c.fresh ? zero : V::load(a.state[0] + i);
        const V agree = g * prev;
        // torch multiplies by sign(g·g_prev) mapped to the etas: NaN stays NaN
        const V factor = select(agree > zero, V(c.eta_plus),
                                select(agree < zero, V(c.eta_minus), select(is_nan(agree), agree, one)));
        const V step = clamp((c.fresh ? V(c.lr) : V::load(a.state[1] + i)) * factor, V(c.step_min), V(c.step_max));
        g = select(agree < zero, zero, g);
        step.store(a.state[1] + i);
        g.store(a.state[0] + i);
        (V::load(a.param + i) - sign(g) * step).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
