// The bandwidth probe: the read-modify-write sweep an optimizer step can at best reach.
//
// Reads R arrays and writes the first W of them, element by element, split between threads
// exactly as a step is (parallel.hpp), with the same vector type. Its time for n elements is
// the floor for any rule that moves the same bytes, so every kernel is reported as a fraction
// of it.
#pragma once

#include "parallel.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

template <int R, int W, class T, class V = NativeVec<T>>
void probe_range(T* const* arrays, index_t begin, index_t end) {
    static_assert(R >= 1 && W >= 0 && W <= R, "reads R >= 1, writes 0..R");
    T* a[R];
    for (int r = 0; r < R; ++r) a[r] = arrays[r];
    V sink(T(0));
    index_t i = begin;
    auto body = [&](auto vec, index_t j) {
        using U = decltype(vec);
        U sum = U::load(a[0] + j);
        for (int r = 1; r < R; ++r) sum = sum + U::load(a[r] + j);
        sum = sum * U(T(0.5));
        for (int w = 0; w < W; ++w) sum.store(a[w] + j);
        return sum;
    };
    for (; i + V::width <= end; i += V::width) {
        const V s = body(V(), i);
        if constexpr (W == 0) sink = sink + s;  // keep read-only sweeps alive
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
    auto body = [&](int t, int nt) {
        probe_range<R, W, T>(arrays, share_edge(n, t, nt, kGrain), share_edge(n, t + 1, nt, kGrain));
    };
    run_parallel(threads, n < kParallelMin, body);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
