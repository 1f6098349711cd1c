// Applying a rule to a range of one array: an aligning scalar head, full vectors, then a
// scalar tail, all with the same arithmetic (so the bits do not depend on where they fall).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "bfloat16.hpp"
#include "bfloat16_pairs.hpp"
#include "int8_state.hpp"
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
// to the first element where `lead` (the parameter, float or bfloat16) is vector-aligned (a
// 64-byte access that straddles two cache lines costs both, and NumPy's large arrays start 16
// bytes into a page; arrays at the same offset all align at once), then two vectors per step
// with the lines ahead prefetched (when `streams` has any), then single vectors and scalars. visit(U(), i) handles U::width
// elements at i, U being V or Scalar<T> with the same arithmetic, so the bits do not depend
// on where the cuts fall.
template <class V, class T, class Lead, class Visit>
FASTOPTIM_INLINE void walk(const Streams<T>& streams, const Lead* lead, index_t size, index_t begin, index_t end,
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

// Rule over [begin, end) of `arrays`, an ArrayRef or a view of one (bfloat16.hpp).
template <class Rule, class V, class A, class Coeffs>
void sweep_view(const Coeffs& coeffs, const A& arrays, index_t begin, index_t end, bool prefetch) {
    // Local copies: the stores through float pointers (and SIMD stores, which may alias anything)
    // could otherwise alias the coefficients and the pointers, forcing a reload of every one per
    // element. The flags are then loop-invariant, but their branches stay in the loop.
    const Coeffs c = coeffs;
    const A a = arrays;
    const Streams<typename A::value_type> streams = streams_of(a, prefetch, Rule::update_reads_grad, kMaxStateSlots);
    const auto over = [&](const auto& view, const auto* lead) FASTOPTIM_LAMBDA_INLINE {
        walk<V>(streams, lead, a.size, begin, end,
                [&](auto vec, index_t i) FASTOPTIM_LAMBDA_INLINE { Rule::template update<decltype(vec)>(c, view, i); });
    };
    if constexpr (A::kBfloat16Params) {
        constexpr bool paired = A::kStateFormat == StateFormat::bf16_nearest ||
                                A::kStateFormat == StateFormat::bf16_stochastic;
        if constexpr (paired && std::is_same_v<V, NativeVec<float>>)  // every stream bfloat16: half the work
            if (a.grad_bits && !a.accumulated && !a.ema && !a.cleared && sweep_pairs<Rule>(c, a, begin, end, streams))
                return;
        over(a, a.param_bits);
    } else {
        // A plain step's loop without the extras' per-vector tests, which GCC does not unswitch
        // from a loop this large: an in-cache AdamW sweep is bound by its instructions, and with
        // bfloat16 state (whose conversions, inlined into the loop, set their constants once per
        // sweep) the tests cost 3-5% from DRAM too (5e7 elements, 2 threads; bench/cpp/sweep_ab.cpp).
        if (!a.accumulated && !a.ema && !a.cleared) {
            const WithoutExtras<A> plain(a);
            return over(plain, a.param);
        }
        over(a, a.param);
    }
}

// Rule over [begin, end) of an array with 8-bit state, begin on a block boundary and end on one
// or at the array's end (else a block's absmax would be rewritten from part of it): block by
// block, each decoded as it is read, updated in float32 and requantized once its last element is
// done. Unaligned vectors: the blocks' edges need not fall on the vectors' alignment. Never
// prefetched: the codes' conversions bound this sweep, not the memory, and the prefetches only
// took issue slots from them (measured: 11% slower with them at 1e7, 2 threads). `View` is
// CodedAs, or BfloatParams of it (a block never straddles 2^32 indices: both are multiples of 256).
template <class Rule, class V, class View, class Coeffs>
void sweep_coded(const Coeffs& coeffs, const ArrayRef<float>& arrays, index_t begin, index_t end) {
    const Coeffs c = coeffs;
    alignas(64) float buffer[kMaxStateSlots * kCodeBlock];
    bool written[kMaxStateSlots];
    View a(arrays, buffer, written);
    constexpr index_t w = V::width;
    std::uint64_t keyed = ~std::uint64_t(0);
    for (index_t lo = begin; lo < end; lo += kCodeBlock) {
        const index_t hi = std::min(end, lo + kCodeBlock);
        if constexpr (View::kBfloat16Params) {
            const std::uint64_t high = std::uint64_t(a.first_index + lo) >> 32;
            if (a.param_stochastic && high != keyed) a.set_keys(keyed = high);
        }
        a.open(lo);
        index_t i = lo;
        for (; i + 2 * w <= hi; i += 2 * w) {
            Rule::template update<V>(c, a, i);
            Rule::template update<V>(c, a, i + w);
        }
        for (; i + w <= hi; i += w) Rule::template update<V>(c, a, i);
        for (; i < hi; ++i) Rule::template update<Scalar<float>>(c, a, i);
        a.template close<V>(hi - lo);
    }
}

// Rule over [begin, end) of one float32-arithmetic array seen through `Params` (OwnParams,
// or BfloatParams for bfloat16 parameters) wrapped around its state format's view: each
// combination is its own loop, chosen once per array.
template <class Rule, class V, template <class> class Params, class Coeffs>
void sweep_formats(const Coeffs& c, const ArrayRef<float>& arrays, index_t begin, index_t end, bool prefetch) {
    const auto run = [&](const auto& view, index_t b, index_t e) { sweep_view<Rule, V>(c, view, b, e, prefetch); };
    switch (arrays.state_format) {
        case StateFormat::bf16_nearest:
            return for_each_stretch(Params<StoredAs<float, StateFormat::bf16_nearest>>(arrays), begin, end, run);
        case StateFormat::bf16_stochastic:
            return for_each_stretch(Params<StoredAs<float, StateFormat::bf16_stochastic>>(arrays), begin, end, run);
        case StateFormat::int8:
            return sweep_coded<Rule, V, Params<CodedAs<float, unsigned_slots<Rule>()>>>(c, arrays, begin, end);
        case StateFormat::native:
            if constexpr (Params<ArrayRef<float>>::kBfloat16Params)
                return for_each_stretch(Params<ArrayRef<float>>(arrays), begin, end, run);
            else
                return sweep_view<Rule, V>(c, arrays, begin, end, prefetch);  // sweep() takes this one itself
    }
}

// The views of an array whose parameters are of its own type: its state format's alone.
template <class A>
using OwnParams = A;

template <class Rule, class T, class V = NativeVec<T>>
void sweep(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& arrays, index_t begin, index_t end,
           bool prefetch) {
    if constexpr (std::is_same_v<T, float>) {
        if (arrays.param_bits) return sweep_formats<Rule, V, BfloatParams>(c, arrays, begin, end, prefetch);
        if (arrays.state_format != StateFormat::native)
            return sweep_formats<Rule, V, OwnParams>(c, arrays, begin, end, prefetch);
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
