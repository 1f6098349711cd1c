// Lion, evolved sign momentum (Chen et al. 2023, Algorithm 2; torch has no twin).
//
//   c = β1·m + (1 − β1)·g
//   p ← p − γ·(sign(c) + λ·p)          (sign(0) = 0)
//   m ← β2·m + (1 − β2)·g
#pragma once

#include <array>

#include "../cautious.hpp"
#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Lion's hyper-parameters, set by name from Chen et al. 2023's defaults: `Lion::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct LionHyper {
    double lr = 1e-4;
    double beta1 = 0.9;
    double beta2 = 0.99;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr LionHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Lion's fold computes once per step and every element's update reads (plain data).
template <class T>
struct LionCoeffs {
    T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, grad_sign;
};

FASTOPTIM_TARGET_BEGIN

struct Lion : RuleBase {
    static constexpr const char* name = "lion";
    using Hyper = LionHyper;
    static constexpr std::array<Field, 5> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"exp_avg"}}};
    template <class T>
    using Coeffs = LionCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.lr), T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(h.weight_decay),
                h.maximize != 0 ? T(-1) : T(1)};
    }

    template <class V, class T, class A, class Caution = NoCaution>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i, const Caution& caution = {}) {
        const V p = load_param<V>(a, i);
        const V g = load_grad<V>(a, i) * V(c.grad_sign);
        const V m = load_state<V>(a, 0, i);
        const V direction = caution(sign(V(c.beta1) * m + V(c.one_minus_beta1) * g), g);
        store_param(a, i, p - V(c.lr) * (direction + V(c.weight_decay) * p));
        store_state(a, 0, i, V(c.beta2) * m + V(c.one_minus_beta2) * g);
    }
};

// Lion with cautious updates: the mask of sign(c)·g > 0.
struct LionCautious : Cautious<Lion> {
    static constexpr const char* name = "lion_cautious";
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
