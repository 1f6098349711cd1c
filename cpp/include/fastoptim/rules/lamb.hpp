// LAMB, layer-wise adaptive moments (You et al. 2020, Algorithm 2 with bias correction;
// torch has no twin).
//
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
//   r = (m/(1 − β1ᵗ)) / (sqrt(v/(1 − β2ᵗ)) + ε) + λ·p
//   p ← p − γ·(‖p‖/‖r‖)·r            (per array; the ratio is 1 where either norm is 0)
//
// Two passes: the first updates m and v and measures ‖p‖ and ‖r‖, the second recomputes r
// from the stored m and v (the same arithmetic, so the same bits) and moves p.
#pragma once

#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Lamb's hyper-parameters, set by name from You et al. 2020's defaults: `Lamb::Hyper h; h.lr = 0.01;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct LambHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-6;
    double weight_decay = 0.0;
    constexpr LambHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Lamb's fold computes once per step and every element's update reads (plain data).
template <class T>
struct LambCoeffs {
    T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias1, inv_bias2, eps, weight_decay;
};

FASTOPTIM_TARGET_BEGIN

struct Lamb : RuleBase {
    static constexpr const char* name = "lamb";
    using Hyper = LambHyper;
    static constexpr std::array<Field, 5> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"exp_avg"}, nonnegative_slot("exp_avg_sq")}};
    static constexpr int norms = 2;  // ‖p‖, ‖r‖
    static constexpr int measured_slots = 2;  // the norm pass advances m and v
    static constexpr bool update_reads_grad = false;  // the update pass reads p, m and v
    template <class T>
    using Coeffs = LambCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double t = double(clock.step);
        return {T(h.lr), T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2),
                T(1.0 / (1.0 - std::pow(h.beta1, t))), T(1.0 / (1.0 - std::pow(h.beta2, t))), T(h.eps),
                T(h.weight_decay)};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE V direction(const Coeffs<T>& c, V p, V m, V v) {
        return m * V(c.inv_bias1) / (sqrt(v * V(c.inv_bias2)) + V(c.eps)) + V(c.weight_decay) * p;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void measure(const Coeffs<T>& c, const A& a, index_t i, V* squares) {
        const V p = load_param<V>(a, i), g = load_grad<V>(a, i);
        // m and v as stored (rounded, for bfloat16 state): the update pass reads them back, so the
        // ratio is measured on the direction it applies.
        const V m = store_state(a, 0, i, V(c.beta1) * load_state<V>(a, 0, i) + V(c.one_minus_beta1) * g);
        const V v = store_state(a, 1, i, V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * (g * g));
        const V r = direction(c, p, m, v);
        squares[0] = p * p;
        squares[1] = r * r;
    }

    // The same norms from m and v as stored, without advancing them: 8-bit state requantizes a
    // block once measure() has advanced all of it, then measures the block again with this.
    template <class V, class T, class A>
    static FASTOPTIM_INLINE void measure_stored(const Coeffs<T>& c, const A& a, index_t i, V* squares) {
        const V p = load_param<V>(a, i);
        const V r = direction(c, p, load_state<V>(a, 0, i), load_state<V>(a, 1, i));
        squares[0] = p * p;
        squares[1] = r * r;
    }

    template <class T>
    static T ratio(const Coeffs<T>&, const double* norms) {
        return norms[0] > 0 && norms[1] > 0 ? T(norms[0] / norms[1]) : T(1);
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V p = load_param<V>(a, i);
        const V r = direction(c, p, load_state<V>(a, 0, i), load_state<V>(a, 1, i));
        store_param(a, i, p - V(c.lr * *a.ratio) * r);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
