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
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Rmsprop : RuleBase {
    static constexpr const char* name = "rmsprop";
    static constexpr std::array<const char*, 8> fields = {
        "lr", "alpha", "eps", "weight_decay", "momentum", "centered", "nesterov", "maximize"};
    static constexpr int slots = 3;  // square_avg, momentum_buffer, grad_avg
    struct Hyper {
        double lr, alpha, eps, weight_decay, momentum, centered, nesterov, maximize;
    };
    template <class T>
    struct Coeffs {
        T lr, alpha, one_minus_alpha, eps, weight_decay, momentum, grad_sign;
        bool centered, use_momentum, nesterov;
    };

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

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        V s = V(c.alpha) * V::load(a.state[0] + i) + V(c.one_minus_alpha) * (g * g);
        s.store(a.state[0] + i);
        if (c.centered) {
            const V mean = V(c.alpha) * V::load(a.state[2] + i) + V(c.one_minus_alpha) * g;
            mean.store(a.state[2] + i);
            s = s - mean * mean;
        }
        const V u = g / (sqrt(s) + V(c.eps));
        V step = u;
        if (c.use_momentum) {
            const V b = V(c.momentum) * V::load(a.state[1] + i) + u;
            b.store(a.state[1] + i);
            step = c.nesterov ? u + V(c.momentum) * b : b;
        }
        (p - V(c.lr) * step).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
