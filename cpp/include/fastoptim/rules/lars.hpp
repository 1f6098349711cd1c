// LARS, layer-wise adaptive rate scaling (You et al. 2017, Algorithm 1; torch has no twin).
//
//   local = η·‖w‖ / (‖g‖ + λ·‖w‖)     (per array; 1 where ‖w‖ or ‖g‖ is 0; η = trust_coefficient)
//   v ← μ·v + γ·local·(g + λ·w)
//   w ← w − v
#pragma once

#include <array>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Lars : RuleBase {
    static constexpr const char* name = "lars";
    static constexpr std::array<const char*, 4> fields = {"lr", "momentum", "weight_decay", "trust_coefficient"};
    static constexpr int slots = 1;  // momentum_buffer
    static constexpr int norms = 2;  // ‖w‖, ‖g‖
    struct Hyper {
        double lr, momentum, weight_decay, trust_coefficient;
    };
    template <class T>
    struct Coeffs {
        T lr, momentum, weight_decay;
        double trust_coefficient, weight_decay_wide;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.momentum), T(h.weight_decay), h.trust_coefficient, h.weight_decay};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void measure(const Coeffs<T>&, const ArrayRef<T>& a, index_t i, V* squares) {
        const V w = V::load(a.param + i), g = V::load(a.grad + i);
        squares[0] = w * w;
        squares[1] = g * g;
    }

    template <class T>
    static T ratio(const Coeffs<T>& c, const double* norms) {
        if (!(norms[0] > 0 && norms[1] > 0)) return T(1);
        return T(c.trust_coefficient * norms[0] / (norms[1] + c.weight_decay_wide * norms[0]));
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        const V w = V::load(a.param + i), g = V::load(a.grad + i);
        const V v = V(c.momentum) * V::load(a.state[0] + i) + V(c.lr * *a.ratio) * (g + V(c.weight_decay) * w);
        v.store(a.state[0] + i);
        (w - v).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
