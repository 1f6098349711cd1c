// Lookahead's synchronisation (Zhang et al. 2019): every k steps of the inner optimizer,
//
//   slow ← slow + α·(fast − slow);   fast ← slow
//
// in one pass over the parameters (fast) and the slow weights. It reads no gradient.
#pragma once

#include <array>

#include "../rule.hpp"
#include "../vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct LookaheadSync : RuleBase {
    static constexpr const char* name = "lookahead";
    static constexpr std::array<const char*, 1> fields = {"alpha"};
    static constexpr int slots = 1;  // slow weights
    static constexpr bool needs_grad = false;
    struct Hyper {
        double alpha;
    };
    template <class T>
    struct Coeffs {
        T alpha;
    };

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.alpha)};
    }

    template <class V, class T>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const ArrayRef<T>& a, index_t i) {
        const V slow = V::load(a.state[0] + i);
        const V merged = slow + V(c.alpha) * (V::load(a.param + i) - slow);
        merged.store(a.state[0] + i);
        merged.store(a.param + i);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
