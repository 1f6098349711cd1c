// Adagrad (Duchi, Hazan & Singer 2011; torch.optim.Adagrad).
//
//   g ← ±g + λ·p
//   s ← s + g²                      (s starts at initial_accumulator_value)
//   p ← p − γ/(1 + (t − 1)·η) · g / (sqrt(s) + ε)        (η = lr_decay)
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adagrad's hyper-parameters, set by name from torch.optim.Adagrad's defaults: `Adagrad::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdagradHyper {
    double lr = 1e-2;
    double lr_decay = 0.0;
    double weight_decay = 0.0;
    double initial_accumulator_value = 0.0;
    double eps = 1e-10;
    double maximize = 0.0;
    constexpr AdagradHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adagrad's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdagradCoeffs {
    T grad_sign, weight_decay, initial, clr, eps;
    bool fresh;
};

FASTOPTIM_TARGET_BEGIN

struct Adagrad : RuleBase {
    static constexpr const char* name = "adagrad";
    using Hyper = AdagradHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, lr_decay, "lr_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, initial_accumulator_value, "initial_accumulator_value", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 1> slots = {{nonnegative_slot("sum", nullptr, true)}};
    template <class T>
    using Coeffs = AdagradCoeffs<T>;

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

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V s = (c.fresh ? V(c.initial) : load_state<V>(a, 0, i)) + g * g;
        store_state(a, 0, i, s);
        store_param(a, i, p - V(c.clr) * g / (sqrt(s) + V(c.eps)));
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
