// ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any β2 with the Optimal
// Rate"), as pytorch-optimizer's ADOPT with its clipping schedule; torch has no twin.
//
//   g ← ±g;  p ← p·(1 − λ·(1 if fixed_decay else γ)) with weight_decouple, else g ← g + λ·p
//   t = 1:  v ← v + g²                      (the parameter moves by the decoupled decay only)
//   t ≥ 2:  n = clamp(g / max(sqrt(v), ε), −t^e, t^e)      (e = clip_exponent)
//           m ← lerp(m, n, 1 − β1);  p ← p − γ·m;  v ← β2·v + (1 − β2)·g²
//
// The update normalizes by the second moment of the previous steps, which does not hold g.
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Adopt's hyper-parameters, from pytorch-optimizer's defaults: `Adopt::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AdoptHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.9999;
    double eps = 1e-6;
    double weight_decay = 0.0;
    double weight_decouple = 0.0;
    double fixed_decay = 0.0;
    double clip_exponent = 0.25;
    double maximize = 0.0;
    constexpr AdoptHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Adopt's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AdoptCoeffs {
    T lr, one_minus_beta1, beta2, one_minus_beta2, eps, clip, grad_sign, l2, decay;
    bool first, decays;
};

FASTOPTIM_TARGET_BEGIN

struct Adopt : RuleBase {
    static constexpr const char* name = "adopt";
    using Hyper = AdoptHyper;
    static constexpr std::array<Field, 9> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, weight_decouple, "weight_decouple"),
        FASTOPTIM_FLAG(Hyper, fixed_decay, "fixed_decay"),
        FASTOPTIM_FIELD(Hyper, clip_exponent, "clip_exponent", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq")}};
    template <class T>
    using Coeffs = AdoptCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        const bool decouple = h.weight_decouple != 0;
        Coeffs<T> c;
        c.lr = T(h.lr);
        c.one_minus_beta1 = T(1.0 - h.beta1);
        c.beta2 = T(h.beta2);
        c.one_minus_beta2 = T(1.0 - h.beta2);
        c.eps = T(h.eps);
        c.clip = T(std::pow(t, h.clip_exponent));
        c.grad_sign = h.maximize != 0 ? T(-1) : T(1);
        c.l2 = decouple ? T(0) : T(h.weight_decay);
        c.decay = T(1.0 - h.weight_decay * (h.fixed_decay != 0 ? 1.0 : h.lr));
        c.decays = decouple && h.weight_decay != 0;
        c.first = clock.step == 1;
        return c;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.decays) p = p * V(c.decay);
        if (c.l2 != T(0)) g = g + V(c.l2) * p;
        const V v = load_state<V>(a, 1, i), m = load_state<V>(a, 0, i);
        if (c.first) {
            store_state(a, 0, i, m);
            store_state(a, 1, i, v + g * g);
            store_param(a, i, p);
            return;
        }
        const V n = clamp(g / maximum(sqrt(v), V(c.eps)), V(-c.clip), V(c.clip));
        const V m_new = store_state(a, 0, i, lerp_toward(m, n, c.one_minus_beta1));
        store_state(a, 1, i, V(c.beta2) * v + V(c.one_minus_beta2) * (g * g));
        store_param(a, i, p - V(c.lr) * m_new);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
