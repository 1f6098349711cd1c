// The bandwidth probe: the read-modify-write sweep an optimizer step can at best reach.
//
// Reads R arrays and writes the first W of them, element by element, split between threads
// exactly as a step is (parallel.hpp), with the same vector type and prefetch. Its time for n elements is
// the floor for any rule that moves the same bytes, so every kernel is reported as a fraction
// of it.
#pragma once

#include "parallel.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

template <int R, int W, class T, class V = NativeVec<T>>
void probe_range(T* const* arrays, index_t n, index_t begin, index_t end) {
    static_assert(R >= 1 && W >= 0 && W <= R, "reads R >= 1, writes 0..R");
    T* a[R];
    for (int r = 0; r < R; ++r) a[r] = arrays[r];
    V sink(T(0));
    Streams<T> streams;
    for (int r = 0; r < R; ++r) streams.add(a[r]);
    index_t i = begin;
    auto body = [&](auto vec, index_t j) {
        using U = decltype(vec);
        U sum = U::load(a[0] + j);
        for (int r = 1; r < R; ++r) sum = sum + U::load(a[r] + j);
        sum = sum * U(T(0.5));
        for (int w = 0; w < W; ++w) sum.store(a[w] + j);
        return sum;
    };
    // The same walk as sweep (sweep.hpp): scalars up to alignment, then two vectors per step,
    // the lines ahead prefetched.
    for (index_t stop = std::min(end, i + misaligned_elements<V>(a[0] + i)); i < stop; ++i) body(Scalar<T>(T(0)), i);
    constexpr index_t step = 2 * V::width;
    constexpr index_t fetched = step * index_t(sizeof(T)) < kLineBytes ? kLineBytes / index_t(sizeof(T)) : step;
    for (; i + step <= end && i + Streams<T>::ahead + fetched <= n; i += step) {
        if (step >= fetched || (i - begin) % fetched == 0) streams.template fetch<fetched>(i);
        const V s0 = body(V(), i), s1 = body(V(), i + V::width);
        if constexpr (W == 0) sink = sink + s0 + s1;  // keep read-only sweeps alive
    }
    for (; i + step <= end; i += step) {
        const V s0 = body(V(), i), s1 = body(V(), i + V::width);
        if constexpr (W == 0) sink = sink + s0 + s1;
    }
    for (; i + V::width <= end; i += V::width) {
        const V s = body(V(), i);
        if constexpr (W == 0) sink = sink + s;
    }
    for (; i < end; ++i) body(Scalar<T>(T(0)), i);
    if constexpr (W == 0) {
        T out[V::width];
        sink.store(out);
        volatile T keep = out[0];
        (void)keep;
    }
}

// One sweep of n elements over R arrays (W written), with `threads` threads.
template <int R, int W, class T>
void probe(T* const* arrays, index_t n, int threads) {
    constexpr index_t piece = kPiece * 4 / index_t(sizeof(T));  // float32 pieces' bytes
    run_pieces(threads, n < kParallelMin, pieces_of(n, piece), [&](index_t p) {
        probe_range<R, W, T>(arrays, n, p * piece, std::min(n, (p + 1) * piece));
    });
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
