// Lion, evolved sign momentum (Chen et al. 2023, Algorithm 2; torch has no twin).
//
//   c = β1·m + (1 − β1)·g
//   p ← p − γ·(sign(c) + λ·p)          (sign(0) = 0)
//   m ← β2·m + (1 − β2)·g
#pragma once

#include <array>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Lion : RuleBase {
    static constexpr const char* name = "lion";
    static constexpr std::array<const char*, 5> fields = {"lr", "beta1", "beta2", "weight_decay", "maximize"};
    static constexpr int slots = 1;  // exp_avg
    struct Hyper {
        double lr, beta1, beta2, weight_decay, maximize;
    };
    template <class T>
    struct Coeffs {
        T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, grad_sign;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(h.weight_decay),
                h.maximize != 0 ? T(-1) : T(1)};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        const V p = V::load(a.param + i);
        const V g = V::load(a.grad + i) * V(c.grad_sign);
        const V m = V::load(a.state[0] + i);
        const V direction = sign(V(c.beta1) * m + V(c.one_minus_beta1) * g);
        (p - V(c.lr) * (direction + V(c.weight_decay) * p)).store(a.param + i);
        (V(c.beta2) * m + V(c.one_minus_beta2) * g).store(a.state[0] + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
