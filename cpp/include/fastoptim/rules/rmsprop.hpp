// RMSprop (Hinton, Coursera lecture 6e; torch.optim.RMSprop), with Nesterov momentum beyond torch.
//
//   g ← ±g + λ·p
//   s ← α·s + (1 − α)·g²
//   centered: ḡ ← α·ḡ + (1 − α)·g and s̃ = s − ḡ², else s̃ = s
//   u ← g / (sqrt(s̃) + ε)
//   no momentum:  p ← p − γ·u
//   momentum μ:   b ← μ·b + u;  p ← p − γ·b            (torch)
//   nesterov:     b ← μ·b + u;  p ← p − γ·(u + μ·b)    (beyond torch)
#pragma once

#include <array>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Rmsprop's hyper-parameters, set by name from torch.optim.RMSprop's defaults: `Rmsprop::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct RmspropHyper {
    double lr = 1e-2;
    double alpha = 0.99;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double momentum = 0.0;
    double centered = 0.0;
    double nesterov = 0.0;
    double maximize = 0.0;
    constexpr RmspropHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Rmsprop's fold computes once per step and every element's update reads (plain data).
template <class T>
struct RmspropCoeffs {
    T lr, alpha, one_minus_alpha, eps, weight_decay, momentum, grad_sign;
    bool centered, use_momentum, nesterov;
};

FASTOPTIM_TARGET_BEGIN

struct Rmsprop : RuleBase {
    static constexpr const char* name = "rmsprop";
    using Hyper = RmspropHyper;
    static constexpr std::array<Field, 8> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, alpha, "alpha", closed(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, momentum, "momentum", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, centered, "centered"),
        FASTOPTIM_FLAG(Hyper, nesterov, "nesterov"),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 3> slots = {{nonnegative_slot("square_avg"), {"momentum_buffer", "momentum"}, {"grad_avg", "centered"}}};
    template <class T>
    using Coeffs = RmspropCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        Coeffs<T> c;
        c.lr = T(h.lr);
        c.alpha = T(h.alpha);
        c.one_minus_alpha = T(1.0 - h.alpha);
        c.eps = T(h.eps);
        c.weight_decay = T(h.weight_decay);
        c.momentum = T(h.momentum);
        c.grad_sign = h.maximize != 0 ? T(-1) : T(1);
        c.centered = h.centered != 0;
        c.use_momentum = h.momentum > 0;
        c.nesterov = h.nesterov != 0;
        return c;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        V s = V(c.alpha) * load_state<V>(a, 0, i) + V(c.one_minus_alpha) * (g * g);
        store_state(a, 0, i, s);
        if (c.centered) {
            const V mean = V(c.alpha) * load_state<V>(a, 2, i) + V(c.one_minus_alpha) * g;
            store_state(a, 2, i, mean);
            s = s - mean * mean;
        }
        const V u = g / (sqrt(s) + V(c.eps));
        V step = u;
        if (c.use_momentum) {
            const V b = V(c.momentum) * load_state<V>(a, 1, i) + u;
            store_state(a, 1, i, b);
            step = c.nesterov ? u + V(c.momentum) * b : b;
        }
        store_param(a, i, p - V(c.lr) * step);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
