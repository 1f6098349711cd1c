// Applying a rule to a range of one array: full vectors, then a scalar tail with the same
// arithmetic (so the bits do not depend on where a vector boundary falls).
#pragma once

#include <algorithm>
#include <cstdint>

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

template <class Rule, class T, class V = NativeVec<T>>
void sweep(const typename Rule::template Coeffs<T>& coeffs, const ArrayRef<T>& arrays, index_t begin, index_t end) {
    // Local copies: the stores through float pointers could otherwise alias the coefficients,
    // forcing a reload of every constant per element and keeping the flags' branches in the loop.
    const typename Rule::template Coeffs<T> c = coeffs;
    const ArrayRef<T> a = arrays;
    constexpr index_t w = V::width, step = 2 * w;  // two independent vectors in flight
    Streams<T> streams;  // every array the update reads: prefetching one it skips costs bandwidth
    streams.add(a.param);
    if constexpr (Rule::update_reads_grad) streams.add(a.grad);
    for (T* slot : a.state) streams.add(slot);
    index_t i = begin;
    // Scalars up to the first element whose parameter address is vector-aligned: a 64-byte
    // load or store that straddles two cache lines costs both (NumPy's large arrays start 16
    // bytes into a page), 15-20% in L2. Arrays with the same offset all align at once.
    for (index_t stop = std::min(end, i + misaligned_elements<V>(a.param + i)); i < stop; ++i)
        Rule::template update<Scalar<T>>(c, a, i);
    // A line is fetched once when a step of two vectors covers at least one line, else the
    // same line a few times: cheap beside the loads. Fetches run on past `end` (the next
    // piece, another thread's or ours) up to the array's end.
    constexpr index_t fetched = step * index_t(sizeof(T)) < kLineBytes ? kLineBytes / index_t(sizeof(T)) : step;
    for (; i + step <= end && i + Streams<T>::ahead + fetched <= a.size; i += step) {
        if (step >= fetched || (i - begin) % fetched == 0) streams.template fetch<fetched>(i);
        Rule::template update<V>(c, a, i);
        Rule::template update<V>(c, a, i + w);
    }
    for (; i + step <= end; i += step) {
        Rule::template update<V>(c, a, i);
        Rule::template update<V>(c, a, i + w);
    }
    for (; i + w <= end; i += w) Rule::template update<V>(c, a, i);
    for (; i < end; ++i) Rule::template update<Scalar<T>>(c, a, i);
}

// The whole array on the calling thread: the entry point for C++ users of one rule.
template <class Rule, class T>
void apply(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& a) {
    sweep<Rule, T>(c, a, 0, a.size);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
