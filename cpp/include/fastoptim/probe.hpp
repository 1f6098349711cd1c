// The bandwidth probe: the read-modify-write sweep an optimizer step can at best reach.
//
// Reads R arrays and writes the first W of them, element by element, split between threads
// exactly as a step is (parallel.hpp), with the same vector type and prefetch. Its time for n elements is
// the floor for any rule that moves the same bytes, so every kernel is reported as a fraction
// of it.
#pragma once

#include <type_traits>

#include "parallel.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

template <int R, int W, class T, class V = NativeVec<T>>
void probe_range(T* const* arrays, index_t n, index_t begin, index_t end, bool prefetch) {
    static_assert(R >= 1 && R <= kMaxStreams && W >= 0 && W <= R, "reads 1..kMaxStreams arrays, writes 0..R");
    T* a[R];
    Streams<T> streams;
    for (int r = 0; r < R; ++r) {
        a[r] = arrays[r];
        if (prefetch) streams.add(a[r]);
    }
    V sink(T(0));
    walk<V>(streams, a[0], n, begin, end, [&](auto vec, index_t j) {
        using U = decltype(vec);
        U sum = U::load(a[0] + j);
        for (int r = 1; r < R; ++r) sum = sum + U::load(a[r] + j);
        sum = sum * U(T(0.5));
        for (int w = 0; w < W; ++w) sum.store(a[w] + j);
        if constexpr (W == 0 && std::is_same_v<U, V>) sink = sink + sum;  // keep read-only sweeps alive
    });
    if constexpr (W == 0) {
        T out[V::width];
        sink.store(out);
        volatile T keep = out[0];
        (void)keep;
    }
}

// One sweep of n elements over R arrays (W written), with `threads` threads, prefetched when the
// arrays add up to more than `prefetch_above` bytes, as a step's.
template <int R, int W, class T>
void probe(T* const* arrays, index_t n, int threads, index_t prefetch_above = kDefaultPrefetchAbove) {
    // Pieces of the same bytes as a step's.
    const bool prefetch = n * R * index_t(sizeof(T)) > prefetch_above;
    const auto range = [&](index_t lo, index_t hi) { probe_range<R, W, T>(arrays, n, lo, hi, prefetch); };
    run_split(threads, n < kParallelMin, sizeof(T) == 4 ? n : 0, sizeof(T) == 4 ? 0 : n, kPiece, range, range);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
