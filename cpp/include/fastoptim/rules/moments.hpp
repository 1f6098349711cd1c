// What Adam, NAdam and RAdam share: the signed gradient, the weight decay (an L2 term in the
// gradient, or AdamW's decoupled decay of the weights) and the two running moments.
//
//   g ← ±g (+ λ·p),  or  p ← p·(1 − γλ) when decoupled
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
#pragma once

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {

// The per-step constants of the moments (plain data: the same type in every target).
template <class T>
struct Moments {
    T grad_sign, l2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2;
    bool decays;
};

FASTOPTIM_TARGET_BEGIN

template <class T>
Moments<T> fold_moments(double lr, double beta1, double beta2, double weight_decay, bool decoupled, bool maximize) {
    Moments<T> c;
    c.grad_sign = maximize ? T(-1) : T(1);
    c.l2 = decoupled ? T(0) : T(weight_decay);
    c.decay = T(1.0 - lr * weight_decay);
    c.decays = decoupled && weight_decay != 0;
    c.beta1 = T(beta1);
    c.one_minus_beta1 = T(1.0 - beta1);
    c.beta2 = T(beta2);
    c.one_minus_beta2 = T(1.0 - beta2);
    return c;
}

// Loads p and g at i, applies the sign and the weight decay, updates and stores m and v (state
// slots 0 and 1), and leaves p, g, m and v in the arguments.
template <class V, class T, class A>
FASTOPTIM_INLINE void advance_moments(const Moments<T>& c, const A& a, index_t i, V& p, V& g, V& m, V& v) {
    p = load_param<V>(a, i);
    g = load_grad<V>(a, i) * V(c.grad_sign);
    if (c.decays) p = p * V(c.decay);
    if (c.l2 != T(0)) g = g + V(c.l2) * p;
    m = V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g;
    v = V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * (g * g);
    store_state(a, 0, i, m);
    store_state(a, 1, i, v);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
