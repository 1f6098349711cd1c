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
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Adadelta : RuleBase {
    static constexpr const char* name = "adadelta";
    static constexpr std::array<const char*, 5> fields = {"lr", "rho", "eps", "weight_decay", "maximize"};
    static constexpr int slots = 2;  // square_avg, acc_delta
    struct Hyper {
        double lr, rho, eps, weight_decay, maximize;
    };
    template <class T>
    struct Coeffs {
        T lr, rho, one_minus_rho, eps, weight_decay, grad_sign;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.rho), T(1.0 - h.rho), T(h.eps), T(h.weight_decay), h.maximize != 0 ? T(-1) : T(1)};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V s = V(c.rho) * V::load(a.state[0] + i) + V(c.one_minus_rho) * (g * g);
        const V u = V::load(a.state[1] + i);
        const V delta = sqrt(u + V(c.eps)) / sqrt(s + V(c.eps)) * g;
        s.store(a.state[0] + i);
        (V(c.rho) * u + V(c.one_minus_rho) * (delta * delta)).store(a.state[1] + i);
        (p - V(c.lr) * delta).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
