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
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Adamax : RuleBase {
    static constexpr const char* name = "adamax";
    static constexpr std::array<const char*, 6> fields = {"lr", "beta1", "beta2", "eps", "weight_decay", "maximize"};
    static constexpr int slots = 2;  // exp_avg, exp_inf
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay, maximize;
    };
    template <class T>
    struct Coeffs {
        T grad_sign, weight_decay, beta1, one_minus_beta1, beta2, eps, step_size;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        return {h.maximize != 0 ? T(-1) : T(1), T(h.weight_decay), T(h.beta1), T(1.0 - h.beta1), T(h.beta2),
                T(h.eps), T(h.lr / (1.0 - std::pow(h.beta1, double(clock.step))))};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V m = V(c.beta1) * V::load(a.state[0] + i) + V(c.one_minus_beta1) * g;
        const V u = maximum(V(c.beta2) * V::load(a.state[1] + i), abs(g) + V(c.eps));
        m.store(a.state[0] + i);
        u.store(a.state[1] + i);
        (p - V(c.step_size) * m / u).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
