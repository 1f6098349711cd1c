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

#include "moments.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Adam : RuleBase {
    static constexpr const char* name = "adam";
    static constexpr std::array<const char*, 8> fields = {
        "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize", "decoupled"};
    static constexpr int slots = 3;  // exp_avg, exp_avg_sq, max_exp_avg_sq
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled;
    };
    template <class T>
    struct Coeffs {
        Moments<T> moments;
        T step_size, inv_sqrt_bias2, eps;
        bool amsgrad;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const double bias1 = 1.0 - std::pow(h.beta1, t);
        const double bias2 = 1.0 - std::pow(h.beta2, t);
        Coeffs<T> c;
        c.moments = Moments<T>::fold(h.lr, h.beta1, h.beta2, h.weight_decay, h.decoupled != 0, h.maximize != 0);
        c.step_size = T(h.lr / bias1);
        c.inv_sqrt_bias2 = T(1.0 / std::sqrt(bias2));
        c.eps = T(h.eps);
        c.amsgrad = h.amsgrad != 0;
        return c;
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        V p, g, m, v;
        c.moments.advance(a, i, p, g, m, v);
        V v_hat = v;
        if (c.amsgrad) {
            v_hat = maximum(V::load(a.state[2] + i), v);
            v_hat.store(a.state[2] + i);
        }
        const V denom = sqrt(v_hat) * V(c.inv_sqrt_bias2) + V(c.eps);
        (p - V(c.step_size) * m / denom).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
