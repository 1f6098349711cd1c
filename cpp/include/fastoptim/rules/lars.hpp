// LARS, layer-wise adaptive rate scaling (You et al. 2017, Algorithm 1; torch has no twin).
//
//   local = η·‖w‖ / (‖g‖ + λ·‖w‖)     (per array; 1 where ‖w‖ or ‖g‖ is 0; η = trust_coefficient)
//   v ← μ·v + γ·local·(g + λ·w)
//   w ← w − v
#pragma once

#include <array>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Lars's hyper-parameters, set by name from You, Gitman & Ginsburg 2017's defaults: `Lars::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct LarsHyper {
    double lr = 1.0;
    double momentum = 0.9;
    double weight_decay = 0.0;
    double trust_coefficient = 1e-3;
    constexpr LarsHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Lars's fold computes once per step and every element's update reads (plain data).
template <class T>
struct LarsCoeffs {
    T lr, momentum, weight_decay;
    double trust_coefficient, weight_decay_wide;
};

FASTOPTIM_TARGET_BEGIN

struct Lars : RuleBase {
    static constexpr const char* name = "lars";
    using Hyper = LarsHyper;
    static constexpr std::array<Field, 4> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, momentum, "momentum", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, trust_coefficient, "trust_coefficient", above(0.0)),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"momentum_buffer"}}};
    static constexpr int norms = 2;  // ‖w‖, ‖g‖
    template <class T>
    using Coeffs = LarsCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.momentum), T(h.weight_decay), h.trust_coefficient, h.weight_decay};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void measure(const Coeffs<T>&, const A& a, index_t i, V* squares) {
        const V w = load_param<V>(a, i), g = load_grad<V>(a, i);
        squares[0] = w * w;
        squares[1] = g * g;
    }

    template <class T>
    static T ratio(const Coeffs<T>& c, const double* norms) {
        if (!(norms[0] > 0 && norms[1] > 0)) return T(1);
        return T(c.trust_coefficient * norms[0] / (norms[1] + c.weight_decay_wide * norms[0]));
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V w = load_param<V>(a, i), g = load_grad<V>(a, i);
        const V v = V(c.momentum) * load_state<V>(a, 0, i) + V(c.lr * *a.ratio) * (g + V(c.weight_decay) * w);
        store_state(a, 0, i, v);
        store_param(a, i, w - v);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
