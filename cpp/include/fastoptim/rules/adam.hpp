// Adam (Kingma & Ba 2015), with AMSGrad (Reddi et al. 2018) and AdamW's decoupled weight
// decay (Loshchilov & Hutter 2019); torch.optim.Adam and torch.optim.AdamW.
//
//   g ← ±g (+ λ·p for Adam's L2 penalty)          p ← p·(1 − γλ) first, for AdamW
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   v̂ ← max(v̂, v) with amsgrad, else v
//   p ← p − γ/(1 − β1ᵗ) · m / (sqrt(v̂)/sqrt(1 − β2ᵗ) + ε)
//
// The bias corrections are folded into two scalars per step: one sqrt and one divide per element.
#pragma once

#include <array>
#include <cmath>

#include "../cautious.hpp"
#include "moments.hpp"

namespace fastoptim {

// Adam's hyper-parameters, set by name from torch.optim.Adam's defaults: `Adam::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdamHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double amsgrad = 0.0;
    double maximize = 0.0;
    double decoupled = 0.0;
    constexpr AdamHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adam's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdamCoeffs {
    Moments<T> moments;
    T step_size, inv_sqrt_bias2, eps;
    bool amsgrad;
};

FASTOPTIM_TARGET_BEGIN

struct Adam : RuleBase {
    static constexpr const char* name = "adam";
    using Hyper = AdamHyper;
    static constexpr std::array<Field, 8> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, amsgrad, "amsgrad"),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
        FASTOPTIM_FLAG(Hyper, decoupled, "decoupled_weight_decay"),
    }};
    static constexpr std::array<Slot, 3> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq"), nonnegative_slot("max_exp_avg_sq", "amsgrad")}};
    template <class T>
    using Coeffs = AdamCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const double bias1 = 1.0 - std::pow(h.beta1, t);
        const double bias2 = 1.0 - std::pow(h.beta2, t);
        Coeffs<T> c;
        c.moments = fold_moments<T>(h.lr, h.beta1, h.beta2, h.weight_decay, h.decoupled != 0, h.maximize != 0);
        c.step_size = T(h.lr / bias1);
        c.inv_sqrt_bias2 = T(1.0 / std::sqrt(bias2));
        c.eps = T(h.eps);
        c.amsgrad = h.amsgrad != 0;
        return c;
    }

    template <class V, class T, class A, class Caution = NoCaution>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i, const Caution& caution = {}) {
        V p, g, m, v;
        advance_moments(c.moments, a, i, p, g, m, v);
        V v_hat = v;
        if (c.amsgrad) {
            v_hat = maximum(load_state<V>(a, 2, i), v);
            store_state(a, 2, i, v_hat);
        }
        const V denom = sqrt(v_hat) * V(c.inv_sqrt_bias2) + V(c.eps);
        store_param(a, i, p - V(c.step_size) * caution(m, g) / denom);
    }
};

// Adam with cautious updates: the mask of m·g > 0 on m.
struct AdamCautious : Cautious<Adam> {
    static constexpr const char* name = "adam_cautious";
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
