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
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Lamb : RuleBase {
    static constexpr const char* name = "lamb";
    static constexpr std::array<const char*, 5> fields = {"lr", "beta1", "beta2", "eps", "weight_decay"};
    static constexpr int slots = 2;  // exp_avg, exp_avg_sq
    static constexpr int norms = 2;  // ‖p‖, ‖r‖
    static constexpr int measured_slots = 2;  // the norm pass advances m and v
    static constexpr bool update_reads_grad = false;  // the update pass reads p, m and v
    struct Hyper {
        double lr, beta1, beta2, eps, weight_decay;
    };
    template <class T>
    struct Coeffs {
        T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias1, inv_bias2, eps, weight_decay;
    };

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

    template <class V, class T>
    static FASTOPTIM_INLINE void measure(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i, V* squares) {
        const V p = V::load(a.param + i), g = V::load(a.grad + i);
        const V m = V(c.beta1) * V::load(a.state[0] + i) + V(c.one_minus_beta1) * g;
        const V v = V(c.beta2) * V::load(a.state[1] + i) + V(c.one_minus_beta2) * (g * g);
        m.store(a.state[0] + i);
        v.store(a.state[1] + i);
        const V r = direction(c, p, m, v);
        squares[0] = p * p;
        squares[1] = r * r;
    }

    template <class T>
    static T ratio(const Coeffs<T>&, const double* norms) {
        return norms[0] > 0 && norms[1] > 0 ? T(norms[0] / norms[1]) : T(1);
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        const V p = V::load(a.param + i);
        const V r = direction(c, p, V::load(a.state[0] + i), V::load(a.state[1] + i));
        (p - V(c.lr * *a.ratio) * r).store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
