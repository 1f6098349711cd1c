// One step over many arrays: one OpenMP region for all of them, not one per array.
//
// The arrays of one dtype are laid end to end in a single index space (prefix offsets); each
// thread takes one contiguous share of it, cut at multiples of kGrain so two threads never
// write the same cache line. Element-wise rules give the same bits whatever the cut.
//
// Rules that scale each array by a ratio of norms (LAMB, LARS) first measure fixed blocks of
// kBlock elements, each summed in 16 fixed lanes whatever the vector width, then add the
// block sums in order: the norms, and so the bits, depend on neither the target nor the
// thread count.
#pragma once

#include <algorithm>
#include <cmath>

#include "sweep.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fastoptim {

// The arrays of one dtype and, per array, its group's coefficients (plain data, see rule.hpp).
template <class T>
struct Work {
    const ArrayRef<T>* arrays = nullptr;
    const index_t* offsets = nullptr;  // count + 1 prefix sums of sizes
    const int* group = nullptr;        // group of each array
    const void* coeffs = nullptr;      // Rule::Coeffs<T>[number of groups]
    index_t count = 0;
    // Only for rules with norms:
    const index_t* block_offsets = nullptr;  // count + 1 prefix sums of blocks per array
    double* partials = nullptr;              // blocks × Rule::norms
    T* ratios = nullptr;                     // count; ArrayRef::ratio points here
};

FASTOPTIM_TARGET_BEGIN

inline constexpr index_t kGrain = 64;             // elements: a multiple of any cache line
inline constexpr index_t kParallelMin = 1 << 15;  // elements below which threads cost more than they give
inline constexpr index_t kBlock = 4096;           // elements per partial norm
inline constexpr int kLanes = 16;                 // accumulators per block, for every width

template <class T>
index_t total(const Work<T>& w) { return w.count ? w.offsets[w.count] : 0; }

template <class T>
index_t total_blocks(const Work<T>& w) { return w.count ? w.block_offsets[w.count] : 0; }

inline index_t share_edge(index_t total, int part, int parts, index_t grain) {
    if (part >= parts) return total;
    const index_t edge = index_t(double(total) * part / parts) / grain * grain;
    return std::min(edge, total);
}

template <class Rule, class T>
const typename Rule::template Coeffs<T>& coeffs_of(const Work<T>& w, index_t k) {
    return static_cast<const typename Rule::template Coeffs<T>*>(w.coeffs)[w.group[k]];
}

// Sweep elements [lo, hi) of the concatenated index space.
template <class Rule, class T>
void sweep_span(const Work<T>& w, index_t lo, index_t hi) {
    if (lo >= hi) return;
    index_t k = std::upper_bound(w.offsets, w.offsets + w.count + 1, lo) - w.offsets - 1;
    for (; k < w.count && w.offsets[k] < hi; ++k) {
        const index_t base = w.offsets[k];
        const index_t b = std::max(lo, base) - base;
        const index_t e = std::min(hi, w.offsets[k + 1]) - base;
        sweep<Rule, T>(coeffs_of<Rule>(w, k), w.arrays[k], b, e);
    }
}

// The sums of squares Rule::measure gives for elements [lo, hi) of one array: element i goes
// to lane (i − lo) mod 16, lanes are added pairwise in double.
template <class Rule, class T, class V = NativeVec<T>>
void measure_block(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& a, index_t lo, index_t hi,
                   double* out) {
    constexpr int n_norms = Rule::norms, w = V::width, groups = kLanes / w;
    static_assert(kLanes % w == 0, "vector width must divide the lane count");
    V acc[n_norms][groups];
    for (auto& row : acc)
        for (V& v : row) v = V(T(0));
    index_t i = lo;
    for (; i + kLanes <= hi; i += kLanes) {
        for (int g = 0; g < groups; ++g) {
            V squares[n_norms];
            Rule::template measure<V>(c, a, i + g * w, squares);
            for (int n = 0; n < n_norms; ++n) acc[n][g] = acc[n][g] + squares[n];
        }
    }
    T lanes[n_norms][kLanes];
    for (int n = 0; n < n_norms; ++n)
        for (int g = 0; g < groups; ++g) acc[n][g].store(lanes[n] + g * w);
    for (; i < hi; ++i) {
        Scalar<T> squares[n_norms];
        Rule::template measure<Scalar<T>>(c, a, i, squares);
        for (int n = 0; n < n_norms; ++n) lanes[n][(i - lo) % kLanes] = lanes[n][(i - lo) % kLanes] + squares[n].x;
    }
    for (int n = 0; n < n_norms; ++n) {
        double sum[kLanes];
        for (int l = 0; l < kLanes; ++l) sum[l] = double(lanes[n][l]);
        for (int half = kLanes / 2; half >= 1; half /= 2)
            for (int l = 0; l < half; ++l) sum[l] += sum[l + half];
        out[n] = sum[0];
    }
}

// Measure blocks [lo, hi) of the concatenated block space.
template <class Rule, class T>
void measure_span(const Work<T>& w, index_t lo, index_t hi) {
    if (lo >= hi) return;
    index_t k = std::upper_bound(w.block_offsets, w.block_offsets + w.count + 1, lo) - w.block_offsets - 1;
    for (index_t b = lo; b < hi; ++b) {
        while (w.block_offsets[k + 1] <= b) ++k;
        const index_t begin = (b - w.block_offsets[k]) * kBlock;
        const index_t end = std::min(begin + kBlock, w.arrays[k].size);
        measure_block<Rule, T>(coeffs_of<Rule>(w, k), w.arrays[k], begin, end, w.partials + b * Rule::norms);
    }
}

// Each array's norms from its blocks, in block order, then its ratio.
template <class Rule, class T>
void finish_norms(const Work<T>& w) {
    for (index_t k = 0; k < w.count; ++k) {
        double norms[Rule::norms] = {};
        for (index_t b = w.block_offsets[k]; b < w.block_offsets[k + 1]; ++b)
            for (int n = 0; n < Rule::norms; ++n) norms[n] += w.partials[b * Rule::norms + n];
        for (double& n : norms) n = std::sqrt(n);
        w.ratios[k] = Rule::ratio(coeffs_of<Rule>(w, k), norms);
    }
}

// body(t, nt) on `threads` threads in one OpenMP region, or on the calling thread alone when
// the work is too small to pay for waking the others.
template <class Body>
void run_parallel(int threads, bool small, const Body& body) {
    if (threads <= 1 || small) {
        body(0, 1);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num(), omp_get_num_threads());
#else
    body(0, 1);
#endif
}

// One step of Rule over the float32 and float64 arrays together.
template <class Rule>
void step_all(const Work<float>& f32, const Work<double>& f64, int threads) {
    const index_t n32 = total(f32), n64 = total(f64);
    // Thread t of nt does its share; barriers bind to the enclosing region, if any.
    auto body = [&](int t, int nt) {
        if constexpr (Rule::norms > 0) {
            const index_t b32 = total_blocks(f32), b64 = total_blocks(f64);
            measure_span<Rule>(f32, share_edge(b32, t, nt, 1), share_edge(b32, t + 1, nt, 1));
            measure_span<Rule>(f64, share_edge(b64, t, nt, 1), share_edge(b64, t + 1, nt, 1));
#if defined(_OPENMP)
#pragma omp barrier
#pragma omp single
#endif
            {
                finish_norms<Rule>(f32);
                finish_norms<Rule>(f64);
            }
        }
        sweep_span<Rule>(f32, share_edge(n32, t, nt, kGrain), share_edge(n32, t + 1, nt, kGrain));
        sweep_span<Rule>(f64, share_edge(n64, t, nt, kGrain), share_edge(n64, t + 1, nt, kGrain));
    };
    run_parallel(threads, n32 + 2 * n64 < kParallelMin, body);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
