// Applying a rule to a range of one array: an aligning scalar head, full vectors, then a
// scalar tail, all with the same arithmetic (so the bits do not depend on where they fall).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "bfloat16.hpp"
#include "prefetch.hpp"
#include "rule.hpp"
#include "vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

// Elements before p reaches V's alignment; 0 when p is not even element-aligned.
template <class V, class T>
index_t misaligned_elements(const T* p) {
    constexpr std::uintptr_t bytes = sizeof(T) * V::width;
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(p);
    if (at % sizeof(T) != 0) return 0;
    return index_t((bytes - at % bytes) % bytes / sizeof(T));
}

// The walk of every sweep over elements [begin, end) of arrays of `size` elements: scalars up
// to the first element where `lead` is vector-aligned (a 64-byte access that straddles two
// cache lines costs both, and NumPy's large arrays start 16 bytes into a page; arrays at the
// same offset all align at once), then two vectors per step with the lines ahead prefetched
// (when `streams` has any), then single vectors and scalars. visit(U(), i) handles U::width
// elements at i, U being V or Scalar<T> with the same arithmetic, so the bits do not depend
// on where the cuts fall.
template <class V, class T, class Visit>
FASTOPTIM_INLINE void walk(const Streams<T>& streams, const T* lead, index_t size, index_t begin, index_t end,
                           const Visit& visit) {
    constexpr index_t w = V::width, step = 2 * w;  // two independent vectors in flight
    index_t i = begin;
    for (const index_t stop = std::min(end, i + misaligned_elements<V>(lead + i)); i < stop; ++i)
        visit(Scalar<T>(T(0)), i);
    // A line is fetched once when a step of two vectors covers at least one line, else the
    // same line a few times: cheap beside the loads. Fetches run on past `end` (the next
    // piece, another thread's or ours) up to the arrays' end.
    constexpr index_t fetched = step * index_t(sizeof(T)) < kLineBytes ? kLineBytes / index_t(sizeof(T)) : step;
    for (; streams.count > 0 && i + step <= end && i + Streams<T>::ahead + fetched <= size; i += step) {
        if (step >= fetched || (i - begin) % fetched == 0) streams.template fetch<fetched>(i);
        visit(V(), i);
        visit(V(), i + w);
    }
    for (; i + step <= end; i += step) {
        visit(V(), i);
        visit(V(), i + w);
    }
    for (; i + w <= end; i += w) visit(V(), i);
    for (; i < end; ++i) visit(Scalar<T>(T(0)), i);
}

// Rule over [begin, end) of `arrays`, an ArrayRef or a StoredAs view (bfloat16.hpp).
template <class Rule, class V, class A, class Coeffs>
void sweep_view(const Coeffs& coeffs, const A& arrays, index_t begin, index_t end, bool prefetch) {
    // Local copies: the stores through float pointers (and SIMD stores, which may alias anything)
    // could otherwise alias the coefficients and the pointers, forcing a reload of every one per
    // element and keeping the flags' branches in the loop.
    const Coeffs c = coeffs;
    const A a = arrays;
    const Streams<typename A::value_type> streams = streams_of(a, prefetch, Rule::update_reads_grad, kMaxStateSlots);
    if constexpr (A::kStateFormat == StateFormat::native) {
        walk<V>(streams, a.param, a.size, begin, end,
                [&](auto vec, index_t i) { Rule::template update<decltype(vec)>(c, a, i); });
    } else {
        // Converting the state doubles the update's instructions: inlined into the loop, its
        // constants are set once per sweep instead of once per vector, and the sweep keeps pace
        // with the memory.
        walk<V>(streams, a.param, a.size, begin, end,
                [&](auto vec, index_t i) FASTOPTIM_LAMBDA_INLINE { Rule::template update<decltype(vec)>(c, a, i); });
    }
}

template <class Rule, class T, class V = NativeVec<T>>
void sweep(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& arrays, index_t begin, index_t end,
           bool prefetch) {
    if constexpr (std::is_same_v<T, float>) {  // each state format is its own loop, chosen once per array
        const auto run = [&](const auto& view, index_t b, index_t e) { sweep_view<Rule, V>(c, view, b, e, prefetch); };
        switch (arrays.state_format) {
            case StateFormat::bf16_nearest: return for_each_stretch<StateFormat::bf16_nearest>(arrays, begin, end, run);
            case StateFormat::bf16_stochastic:
                return for_each_stretch<StateFormat::bf16_stochastic>(arrays, begin, end, run);
            case StateFormat::native: break;
        }
    }
    sweep_view<Rule, V>(c, arrays, begin, end, prefetch);
}

// The whole array on the calling thread: the entry point for C++ users of one rule.
// Prefetched when its arrays add up to more than `prefetch_above` bytes (prefetch.hpp).
template <class Rule, class T>
void apply(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& a,
           index_t prefetch_above = kDefaultPrefetchAbove) {
    sweep<Rule, T>(c, a, 0, a.size, bytes_of(a) > prefetch_above);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
