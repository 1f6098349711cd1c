// Stochastic gradient descent with momentum, dampening and Nesterov momentum (torch.optim.SGD).
//
//   g ← ±g + λ·p                          (− when maximize; λ = weight_decay)
//   b ← g on the first step, else μ·b + (1 − τ)·g      (μ = momentum, τ = dampening)
//   g ← g + μ·b if nesterov else b        (only when μ ≠ 0)
//   p ← p − γ·g
#pragma once

#include <array>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Sgd : RuleBase {
    static constexpr const char* name = "sgd";
    static constexpr std::array<const char*, 6> fields = {
        "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"};
    static constexpr int slots = 1;  // momentum_buffer
    struct Hyper {
        double lr, momentum, dampening, weight_decay, nesterov, maximize;
    };
    template <class T>
    struct Coeffs {
        T lr, weight_decay, grad_sign, momentum, buffer_keep, buffer_grad;
        bool use_momentum, nesterov, fresh;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        Coeffs<T> c;
        c.lr = T(h.lr);
        c.weight_decay = T(h.weight_decay);
        c.grad_sign = h.maximize != 0 ? T(-1) : T(1);
        c.momentum = T(h.momentum);
        c.buffer_keep = T(h.momentum);
        c.buffer_grad = T(1.0 - h.dampening);
        c.use_momentum = h.momentum != 0;
        c.nesterov = h.nesterov != 0;
        c.fresh = clock.fresh;
        return c;
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        if (c.use_momentum) {
            T* buf_ptr = a.state[0] + i;
            V buf = c.fresh ? g : V(c.buffer_keep) * V::load(buf_ptr) + V(c.buffer_grad) * g;
            buf.store(buf_ptr);
            g = c.nesterov ? g + V(c.momentum) * buf : buf;
        }
        (p - V(c.lr) * g).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
