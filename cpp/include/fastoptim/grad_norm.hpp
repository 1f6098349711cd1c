// The norm of a step's gradients, and whether each of their elements is finite: one read-only
// pass over the gradients of both dtypes, in blocks of kBlock elements measured in any order
// and on any thread, each summed in 16 fixed lanes whatever the vector width (as LAMB's and
// LARS's norms), the block sums then added in block order: the same bits on every target and
// thread count. Also the in-place scaling of torch's clip_grad_norm_.
//
// Finiteness is checked per element (u − u is 0 for a finite u and NaN otherwise), never
// inferred from the norm, whose sum of squares may overflow on finite gradients. It needs IEEE
// arithmetic: -ffast-math (-ffinite-math-only) lets the compiler fold u − u to 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "parallel.hpp"

namespace fastoptim {

// What a pass measures of the gradients u = g·mult: Σu² (l2), Σ|u| (l1) or max |u| (max).
enum class NormKind : int { l2 = 0, l1 = 1, max = 2 };

// A pass's result: the measure (not yet rooted: distributed callers add the ranks' sums of
// squares first) and whether every element was finite. With a non-finite element the measure
// is whatever the arithmetic gave (inf or NaN for the sums).
struct GradMeasure {
    double value = 0;
    bool finite = true;
};

// The gradients of one dtype for a norm pass: `arrays[k].grad` and `.size`, each array's
// blocks (prefix sums, as Work's), and room for two doubles per block.
template <class T>
struct GradBlocks {
    const ArrayRef<T>* arrays = nullptr;
    index_t count = 0;
    const index_t* block_offsets = nullptr;  // count + 1
    double* partials = nullptr;              // 2 per block: the measure, then 0 or NaN
    T mult = T(1);                           // each element is measured as g·mult
};

// What a pass computes beside the measure. The pass is a clipped step's whole extra cost, so
// it does no work it need not: no product when mult is 1 (g·1 is g), no finiteness when no
// one asked (GradMeasure::finite is then true).
struct NormOptions {
    NormKind kind = NormKind::l2;
    bool check_finite = true;
};

FASTOPTIM_TARGET_BEGIN

template <NormKind K, class V>
FASTOPTIM_INLINE V accumulate(V acc, V u) {
    if constexpr (K == NormKind::l2) return acc + u * u;
    else if constexpr (K == NormKind::l1) return acc + abs(u);
    else return max(acc, abs(u));
}

// Elements of T, or bfloat16 patterns (a bfloat16 parameter's gradient), as V.
template <class V>
FASTOPTIM_INLINE V load_as(const typename V::value_type* p) { return V::load(p); }
template <class V>
FASTOPTIM_INLINE V load_as(const std::uint16_t* p) { return load_bfloat16<V>(p); }

// B blocks side by side, block s being the `count` elements from starts[s] (of T, or bfloat16
// patterns), into outs[s][0] (its measure) and outs[s][1] (0, or NaN if one of its elements is
// not finite). Element i of a block goes to lane i mod 16, the lanes are added pairwise in double (or their maximum
// taken): the bits of a block do not depend on B nor on its companions. Reading B blocks at
// once keeps B streams in flight, which a cache serves faster than one (a read-only pass at
// 1e6 float32: 55 GB/s from one stream, 70 from two and 90 from four, on this project's 2-core
// Xeon; eight took a clipped AdamW step from 1.24-1.27x the plain step's time to 1.19-1.25x).
// The finiteness sum is 0 or NaN whatever its order: one per block serves all its lanes.
template <NormKind K, bool kScaled, bool kCheck, int B, class T, class S, class V = NativeVec<T>>
void measure_grad_blocks(const S* const* starts, index_t count, T mult, double* const* outs) {
    constexpr int w = V::width, groups = kLanes / w;
    static_assert(kLanes % w == 0 && kBlock % kLanes == 0, "vector width | lanes | block");
    V acc[B][groups], bad[B];
    for (int s = 0; s < B; ++s) {
        for (V& a : acc[s]) a = V(T(0));
        bad[s] = V(T(0));
    }
    const V m(mult);
    const index_t body = count - count % kLanes;
    for (index_t i = 0; i < body; i += kLanes)
        for (int s = 0; s < B; ++s)
            for (int k = 0; k < groups; ++k) {
                V u = load_as<V>(starts[s] + i + k * w);
                if constexpr (kScaled) u = u * m;
                acc[s][k] = accumulate<K>(acc[s][k], u);
                if constexpr (kCheck) bad[s] = bad[s] + (u - u);
            }
    for (int s = 0; s < B; ++s) {
        T lanes[kLanes], bad_lanes[w];
        for (int k = 0; k < groups; ++k) acc[s][k].store(lanes + k * w);
        bad[s].store(bad_lanes);
        double bad_sum = 0;
        for (const T b : bad_lanes) bad_sum += double(b);
        if constexpr (B == 1)  // blocks side by side are whole: kBlock elements, no tail
            for (index_t j = body; j < count; ++j) {
                Scalar<T> u = load_as<Scalar<T>>(starts[s] + j);
                if constexpr (kScaled) u = u * Scalar<T>(mult);
                lanes[j % kLanes] = accumulate<K>(Scalar<T>(lanes[j % kLanes]), u).x;
                if constexpr (kCheck) bad_sum += double(u.x - u.x);
            }
        double sum[kLanes];
        for (int l = 0; l < kLanes; ++l) sum[l] = double(lanes[l]);
        for (int half = kLanes / 2; half >= 1; half /= 2)
            for (int l = 0; l < half; ++l)
                sum[l] = K == NormKind::max ? std::max(sum[l], sum[l + half]) : sum[l] + sum[l + half];
        outs[s][0] = sum[0];
        outs[s][1] = bad_sum;
    }
}

// Whole blocks read side by side: as many as keep every accumulator in a register (8 with
// AVX-512 floats, 4 with AVX2, 2 with SSE2, 1 in scalar code).
template <class T>
constexpr int blocks_at_once() {
    constexpr int groups = kLanes / NativeVec<T>::width;
    return groups >= 8 ? 1 : 8 / groups;
}

// Blocks [lo, hi) of the concatenated block space. Whole blocks, of one array or of several
// small ones, go blocks_at_once() at a time; a last, partial block of an array goes alone.
template <NormKind K, bool kScaled, bool kCheck, class T>
void measure_grad_span(const GradBlocks<T>& b, index_t lo, index_t hi) {
    if (lo >= hi) return;
    constexpr int most = blocks_at_once<T>();
    const T* starts[most];
    double* outs[most];
    int pending = 0;
    auto flush = [&] {  // the pending blocks, most at a time, then in halves
        int s = 0;
        const auto measure = [&](auto at_once) {
            constexpr int n = decltype(at_once)::value;
            if constexpr (n <= most)
                for (; s + n <= pending; s += n)
                    measure_grad_blocks<K, kScaled, kCheck, n, T, T>(starts + s, kBlock, b.mult, outs + s);
        };
        measure(std::integral_constant<int, 8>());
        measure(std::integral_constant<int, 4>());
        measure(std::integral_constant<int, 2>());
        measure(std::integral_constant<int, 1>());
        pending = 0;
    };
    index_t k = std::upper_bound(b.block_offsets, b.block_offsets + b.count + 1, lo) - b.block_offsets - 1;
    for (index_t block = lo; block < hi; ++block) {
        while (b.block_offsets[k + 1] <= block) ++k;
        const ArrayRef<T>& a = b.arrays[k];
        const index_t first = (block - b.block_offsets[k]) * kBlock;
        const index_t count = std::min(kBlock, a.size - first);
        double* out = b.partials + 2 * block;
        if constexpr (std::is_same_v<T, float>)
            if (a.grad_bits) {  // bfloat16, alone: the lanes' sums are the same either way
                const std::uint16_t* bits = a.grad_bits + first;
                measure_grad_blocks<K, kScaled, kCheck, 1, T, std::uint16_t>(&bits, count, b.mult, &out);
                continue;
            }
        const T* start = a.grad + first;
        if (count < kBlock) {
            measure_grad_blocks<K, kScaled, kCheck, 1, T, T>(&start, count, b.mult, &out);
            continue;
        }
        starts[pending] = start;
        outs[pending] = out;
        if (++pending == most) flush();
    }
    flush();
}

template <class T>
index_t elements(const GradBlocks<T>& b) {
    index_t n = 0;
    for (index_t k = 0; k < b.count; ++k) n += b.arrays[k].size;
    return n;
}

template <NormKind K, class T>
void add_blocks(const GradBlocks<T>& b, GradMeasure& m, double& bad) {
    const index_t blocks = b.count ? b.block_offsets[b.count] : 0;
    for (index_t block = 0; block < blocks; ++block) {
        const double v = b.partials[2 * block];
        m.value = K == NormKind::max ? std::max(m.value, v) : m.value + v;
        bad += b.partials[2 * block + 1];
    }
}

// The measure of every gradient of both dtypes (float32 blocks first, then float64), shared
// among `threads` threads as a step's passes are.
template <NormKind K, bool kCheck>
GradMeasure measure_grads(const GradBlocks<float>& f32, const GradBlocks<double>& f64, int threads) {
    const index_t b32 = f32.count ? f32.block_offsets[f32.count] : 0;
    const index_t b64 = f64.count ? f64.block_offsets[f64.count] : 0;
    // Pieces of 8 float32 blocks (128 KiB), or 4 float64 ones (as many bytes as two update
    // pieces), each thread's run taken last to first: the update pass that follows starts each
    // thread at the first piece of the same run, and finds the gradients this pass read last
    // still in its caches. (Each block's sum has its own slot, added in block order below: the
    // order of the pieces changes no bit.)
    const index_t per32 = 8, per64 = 4;
    const index_t p32 = pieces_of(b32, per32), p64 = pieces_of(b64, per64), pieces = p32 + p64;
    const bool scaled32 = f32.mult != 1.0f, scaled64 = f64.mult != 1.0;
    run_pieces(threads, elements(f32) + 2 * elements(f64) < kParallelMin, pieces, [&](index_t p) {
        if (p < p32) {
            const index_t lo = p * per32, hi = std::min(b32, (p + 1) * per32);
            if (scaled32) measure_grad_span<K, true, kCheck>(f32, lo, hi);
            else measure_grad_span<K, false, kCheck>(f32, lo, hi);
        } else {
            const index_t lo = (p - p32) * per64, hi = std::min(b64, (p - p32 + 1) * per64);
            if (scaled64) measure_grad_span<K, true, kCheck>(f64, lo, hi);
            else measure_grad_span<K, false, kCheck>(f64, lo, hi);
        }
    }, /*backwards=*/true);
    GradMeasure m;
    double bad = 0;
    add_blocks<K>(f32, m, bad);
    add_blocks<K>(f64, m, bad);
    m.finite = bad == 0;  // NaN compares unequal
    return m;
}

template <NormKind K>
GradMeasure measure_grads(bool check_finite, const GradBlocks<float>& f32, const GradBlocks<double>& f64,
                          int threads) {
    return check_finite ? measure_grads<K, true>(f32, f64, threads) : measure_grads<K, false>(f32, f64, threads);
}

inline GradMeasure measure_grads(const NormOptions& options, const GradBlocks<float>& f32,
                                 const GradBlocks<double>& f64, int threads) {
    switch (options.kind) {
        case NormKind::l1: return measure_grads<NormKind::l1>(options.check_finite, f32, f64, threads);
        case NormKind::max: return measure_grads<NormKind::max>(options.check_finite, f32, f64, threads);
        default: return measure_grads<NormKind::l2>(options.check_finite, f32, f64, threads);
    }
}

// x ← x·factor, or with `add_grad` x ← x + g·factor (gradient accumulation), over elements
// [lo, hi) of the concatenated `param` arrays of `w` (g: each ArrayRef's `grad`, or its
// `grad_bits`: a bfloat16 gradient added to a float32 buffer).
template <class T, class V = NativeVec<T>>
void scale_span(const Work<T>& w, T factor, bool add_grad, bool prefetch, index_t lo, index_t hi) {
    if (lo >= hi) return;
    index_t k = std::upper_bound(w.offsets, w.offsets + w.count + 1, lo) - w.offsets - 1;
    for (; k < w.count && w.offsets[k] < hi; ++k) {
        const index_t base = w.offsets[k];
        const ArrayRef<T>& a = w.arrays[k];
        T* x = a.param;
        const index_t e = std::min(hi, w.offsets[k + 1]) - base, b = std::max(lo, base) - base;
        if (add_grad) {
            Streams<T> streams;  // beyond the caches, as a step's sweep
            if (prefetch) {
                streams.add(x);
                streams.add(a.grad);
                streams.add(a.grad_bits, 1);
            }
            walk<V>(streams, x, a.size, b, e, [&](auto vec, index_t i) {
                using U = decltype(vec);
                (U::load(x + i) + gradient_at<U>(a, i) * U(factor)).store(x + i);
            });
        } else {
            walk<V>(Streams<T>{}, x, a.size, b, e,
                    [&](auto vec, index_t i) { (decltype(vec)::load(x + i) * decltype(vec)(factor)).store(x + i); });
        }
    }
}

// Every `param` array of both dtypes multiplied in place by `factor` (rounded to each dtype),
// or with `add_grad` given each its `grad`·factor.
inline void scale_arrays(const Work<float>& f32, const Work<double>& f64, double factor, bool add_grad, int threads,
                         index_t prefetch_above = kDefaultPrefetchAbove) {
    const index_t n32 = total(f32), n64 = total(f64);
    const bool prefetch = add_grad && (n32 * 4 + n64 * 8) * 2 > prefetch_above;
    run_split(threads, n32 + 2 * n64 < kParallelMin, n32, n64, kPiece,
              [&](index_t lo, index_t hi) { scale_span(f32, float(factor), add_grad, prefetch, lo, hi); },
              [&](index_t lo, index_t hi) { scale_span(f64, factor, add_grad, prefetch, lo, hi); });
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
