// Adagrad (Duchi, Hazan & Singer 2011; torch.optim.Adagrad).
//
//   g ← ±g + λ·p
//   s ← s + g²                      (s starts at initial_accumulator_value)
//   p ← p − γ/(1 + (t − 1)·η) · g / (sqrt(s) + ε)        (η = lr_decay)
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Adagrad : RuleBase {
    static constexpr const char* name = "adagrad";
    static constexpr std::array<const char*, 6> fields = {
        "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize"};
    static constexpr int slots = 1;  // sum
    struct Hyper {
        double lr, lr_decay, weight_decay, initial_accumulator_value, eps, maximize;
    };
    template <class T>
    struct Coeffs {
        T grad_sign, weight_decay, initial, clr, eps;
        bool fresh;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        Coeffs<T> c;
        c.grad_sign = h.maximize != 0 ? T(-1) : T(1);
        c.weight_decay = T(h.weight_decay);
        c.initial = T(h.initial_accumulator_value);
        c.clr = T(h.lr / (1.0 + double(clock.step - 1) * h.lr_decay));
        c.eps = T(h.eps);
        c.fresh = clock.fresh;
        return c;
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p = V::load(a.param + i);
        V g = V::load(a.grad + i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V s = (c.fresh ? V(c.initial) : V::load(a.state[0] + i)) + g * g;
        s.store(a.state[0] + i);
        (p - V(c.clr) * g / (sqrt(s) + V(c.eps))).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
