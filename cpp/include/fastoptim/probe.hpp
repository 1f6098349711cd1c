// The bandwidth probe: the read-modify-write sweep an optimizer step can at best reach.
//
// Reads R arrays and writes the first W of them (and, for bfloat16 state, H 16-bit arrays),
// element by element, split between threads
// exactly as a step is (parallel.hpp), with the same vector type and prefetch. Its time for n elements is
// the floor for any rule that moves the same bytes, so every kernel is reported as a fraction
// of it.
#pragma once

#include <cstdint>
#include <type_traits>

#include "bfloat16.hpp"
#include "parallel.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

// Reads R arrays of T (writes the first W) and reads and writes H arrays of 16-bit elements
// (bfloat16 state beside float32 parameters, H > 0 only for float), element by element.
template <int R, int W, int H, class T, class V = NativeVec<T>>
void probe_range(void* const* arrays, index_t n, index_t begin, index_t end, bool prefetch) {
    static_assert(R >= 1 && W >= 0 && W <= R && H >= 0 && R + H <= kMaxStreams, "reads 1..kMaxStreams arrays, writes 0..R");
    static_assert(H == 0 || std::is_same_v<T, float>, "16-bit streams are bfloat16 state beside float32");
    T* a[R];
    std::uint16_t* half[H > 0 ? H : 1];
    Streams<T> streams;
    for (int r = 0; r < R; ++r) {
        a[r] = static_cast<T*>(arrays[r]);
        if (prefetch) streams.add(a[r]);
    }
    for (int h = 0; h < H; ++h) {
        half[h] = static_cast<std::uint16_t*>(arrays[R + h]);
        if (prefetch) streams.add(half[h], true);
    }
    V sink(T(0));
    walk<V>(streams, a[0], n, begin, end, [&](auto vec, index_t j) {
        using U = decltype(vec);
        U sum = U::load(a[0] + j);
        for (int r = 1; r < R; ++r) sum = sum + U::load(a[r] + j);
        sum = sum * U(T(0.5));
        if constexpr (H > 0) {
            using B = Bits<U>;
            for (int h = 0; h < H; ++h) B::store16(half[h] + j, B::add(B::load16(half[h] + j), B::of(sum)));
        }
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

// One sweep of n elements over R arrays (W written) and H 16-bit arrays (read and written), with
// `threads` threads, prefetched when the arrays add up to more than `prefetch_above` bytes, as a step's.
template <int R, int W, class T, int H = 0>
void probe(void* const* arrays, index_t n, int threads, index_t prefetch_above = kDefaultPrefetchAbove) {
    // Pieces of the same bytes as a step's.
    const bool prefetch = n * (R * index_t(sizeof(T)) + H * 2) > prefetch_above;
    const auto range = [&](index_t lo, index_t hi) { probe_range<R, W, H, T>(arrays, n, lo, hi, prefetch); };
    run_split(threads, n < kParallelMin, sizeof(T) == 4 ? n : 0, sizeof(T) == 4 ? 0 : n, kPiece, range, range);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
