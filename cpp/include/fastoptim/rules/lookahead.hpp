// Lookahead's synchronisation (Zhang et al. 2019): every k steps of the inner optimizer,
//
//   slow ← slow + α·(fast − slow);   fast ← slow
//
// in one pass over the parameters (fast) and the slow weights. It reads no gradient.
#pragma once

#include <array>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// LookaheadSync's hyper-parameters, set by name from Zhang et al. 2019's defaults: `LookaheadSync::Hyper h; h.alpha = 0.8;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct LookaheadSyncHyper {
    double alpha = 0.5;
    constexpr LookaheadSyncHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What LookaheadSync's fold computes once per step and every element's update reads (plain data).
template <class T>
struct LookaheadSyncCoeffs {
    T alpha;
};

FASTOPTIM_TARGET_BEGIN

struct LookaheadSync : RuleBase {
    static constexpr const char* name = "lookahead";
    using Hyper = LookaheadSyncHyper;
    static constexpr std::array<Field, 1> fields = {{
        FASTOPTIM_FIELD(Hyper, alpha, "alpha", closed(0.0, 1.0)),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"slow"}}};
    static constexpr bool needs_grad = false;
    static constexpr ClockScope clock = ClockScope::per_group;  // Lookahead counts its own steps
    template <class T>
    using Coeffs = LookaheadSyncCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.alpha)};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V slow = load_state<V>(a, 0, i);
        const V merged = slow + V(c.alpha) * (load_param<V>(a, i) - slow);
        store_state(a, 0, i, merged);
        store_param(a, i, merged);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
