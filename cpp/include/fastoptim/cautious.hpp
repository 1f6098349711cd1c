// Cautious updates (Liang et al. 2024, "Cautious Optimizers: Improving Training with One Line of
// Code"), as their reference code and pytorch-optimizer's apply_cautious: the components of a
// rule's direction u whose sign disagrees with the gradient are dropped, and the rest rescaled
// by the array's count n over the kept count k plus one:
//
//   u ← u · [u·g > 0] · n / (k + 1)
//
// Cautious<Rule> runs Rule's own update twice: a measure pass through DryRun, which reads every
// array and writes none, counts k for each array in the fixed blocks of the norm pass (so the
// count, like a norm, is the same on every target and thread count); the update pass applies
// the mask. A rule takes part by passing its direction and gradient through its `caution`
// argument, NoCaution for the plain rule.
#pragma once

#include <cmath>

#include "rule.hpp"
#include "vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

// The plain rule: the direction as it is.
struct NoCaution {
    template <class V>
    FASTOPTIM_INLINE V operator()(const V& u, const V&) const {
        return u;
    }
};

// The measure pass: records which components agree (1) or not (0), and changes nothing.
template <class V>
struct CautionCount {
    V* kept;
    FASTOPTIM_INLINE V operator()(const V& u, const V& g) const {
        using T = typename V::value_type;
        *kept = select(u * g > V(T(0)), V(T(1)), V(T(0)));
        return u;
    }
};

// The update pass: u·[u·g > 0]·n/(k + 1), the mask's scale folded in (a NaN u stays NaN).
template <class T>
struct CautionScale {
    T scale;
    template <class V>
    FASTOPTIM_INLINE V operator()(const V& u, const V& g) const {
        return u * select(u * g > V(T(0)), V(scale), V(T(0)));
    }
};

// The arrays of `A` seen by the measure pass: every load as A's, every store dropped (its value
// returned as if stored). It declares itself non-native and bfloat16-parametered so that
// rule.hpp's loads and stores come here, whatever A stores its arrays as.
template <class A>
struct DryRun {
    using value_type = typename A::value_type;
    using T = value_type;
    static constexpr StateFormat kStateFormat = StateFormat::bf16_nearest;  // any non-native format
    static constexpr bool kBfloat16Params = true;
    static constexpr bool kExtras = true;  // load_grad reads `accumulated`, passed on from A
    const A& inner;
    T grad_mult;
    const T* accumulated;
    T* ema = nullptr;  // no EMA, no buffer to clear: store_param only hands the value back
    T ema_weight = T(0);
    T* cleared = nullptr;

    explicit DryRun(const A& a) : inner(a), grad_mult(a.grad_mult), accumulated(a.accumulated) {}

    template <class V>
    FASTOPTIM_INLINE V load_param_bits(index_t i) const {
        return load_param<V>(inner, i);
    }
    template <class V>
    FASTOPTIM_INLINE V load_grad_bits(index_t i) const {  // before grad_mult: load_grad applies it
        if constexpr (A::kBfloat16Params) return inner.template load_grad_bits<V>(i);
        else return V::load(inner.grad + i);
    }
    template <class V>
    FASTOPTIM_INLINE V store_param_bits(index_t, const V& value) const {
        return value;
    }
    template <class V>
    FASTOPTIM_INLINE V load_stored(int slot, index_t i) const {
        return load_state<V>(inner, slot, i);
    }
    template <class V>
    FASTOPTIM_INLINE V store_stored(int, index_t, const V& value) const {
        return value;
    }
};

// Rule with cautious updates: the same hyper-parameters and state, a count per array first.
template <class Rule>
struct Cautious : Rule {
    static constexpr int norms = 2;  // components kept, components in all (as sums of squares of 1)
    static constexpr bool measure_reads_state = true;

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void measure(const typename Rule::template Coeffs<T>& c, const A& a, index_t i,
                                         V* squares) {
        V kept(T(1));  // a rule whose update skips its caution (SGD without momentum) keeps all
        Rule::template update<V>(c, DryRun<A>(a), i, CautionCount<V>{&kept});
        squares[0] = kept;
        squares[1] = V(T(1));
    }

    // n/(k + 1); the norm pass hands over square roots of the counts, which are exact integers
    template <class T>
    static T ratio(const typename Rule::template Coeffs<T>&, const double* norms) {
        const double kept = std::nearbyint(norms[0] * norms[0]), all = std::nearbyint(norms[1] * norms[1]);
        return T(all / (kept + 1.0));
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const typename Rule::template Coeffs<T>& c, const A& a, index_t i) {
        Rule::template update<V>(c, a, i, CautionScale<T>{*a.ratio});
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
