// Stochastic gradient descent with momentum, dampening and Nesterov momentum (torch.optim.SGD).
//
//   g ← ±g + λ·p                          (− when maximize; λ = weight_decay)
//   b ← g on the first step, else μ·b + (1 − τ)·g      (μ = momentum, τ = dampening)
//   g ← g + μ·b if nesterov else b        (only when μ ≠ 0)
//   p ← p − γ·g
#pragma once

#include <array>

#include "../cautious.hpp"
#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Sgd's hyper-parameters, set by name from torch.optim.SGD's defaults: `Sgd::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct SgdHyper {
    double lr = 1e-3;
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    double nesterov = 0.0;
    double maximize = 0.0;
    constexpr SgdHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Sgd's fold computes once per step and every element's update reads (plain data).
template <class T>
struct SgdCoeffs {
    T lr, weight_decay, grad_sign, momentum, buffer_keep, buffer_grad, decay;
    bool use_momentum, nesterov, fresh, decays;  // decays: SGDW's decoupled weight decay
};

FASTOPTIM_TARGET_BEGIN

struct Sgd : RuleBase {
    static constexpr const char* name = "sgd";
    using Hyper = SgdHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, momentum, "momentum", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, dampening, "dampening", any_real()),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, nesterov, "nesterov"),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"momentum_buffer", "momentum", true}}};
    template <class T>
    using Coeffs = SgdCoeffs<T>;

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
        c.decay = T(1);
        c.decays = false;
        return c;
    }

    template <class V, class T, class A, class Caution = NoCaution>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i, const Caution& caution = {}) {
        V p = load_param<V>(a, i);
        if (c.decays) p = p * V(c.decay);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        if (c.use_momentum) {
            const V buf = c.fresh ? g : V(c.buffer_keep) * load_state<V>(a, 0, i) + V(c.buffer_grad) * g;
            store_state(a, 0, i, buf);
            g = caution(c.nesterov ? g + V(c.momentum) * buf : buf, g);
        }
        store_param(a, i, p - V(c.lr) * g);
    }
};

// SGD with cautious updates: the mask of (the momentum's direction)·g > 0, with momentum only.
struct SgdCautious : Cautious<Sgd> {
    static constexpr const char* name = "sgd_cautious";
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
