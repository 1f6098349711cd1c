// One step over many arrays: one OpenMP region for all of them, not one per array.
//
// The arrays of one dtype are laid end to end in a single index space (prefix offsets); each
// thread takes one contiguous share of it, cut at multiples of kGrain so two threads never
// write the same cache line. Element-wise rules give the same bits whatever the cut.
#pragma once

#include <algorithm>

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
};

FASTOPTIM_TARGET_BEGIN

inline constexpr index_t kGrain = 64;              // elements: a multiple of any cache line
inline constexpr index_t kParallelMin = 1 << 15;   // elements below which threads cost more than they give

template <class T>
index_t total(const Work<T>& w) { return w.count ? w.offsets[w.count] : 0; }

// Sweep elements [lo, hi) of the concatenated index space.
template <class Rule, class T>
void sweep_span(const Work<T>& w, index_t lo, index_t hi) {
    if (lo >= hi) return;
    using C = typename Rule::template Coeffs<T>;
    const C* coeffs = static_cast<const C*>(w.coeffs);
    index_t k = std::upper_bound(w.offsets, w.offsets + w.count + 1, lo) - w.offsets - 1;
    for (; k < w.count && w.offsets[k] < hi; ++k) {
        const index_t base = w.offsets[k];
        const index_t b = std::max(lo, base) - base;
        const index_t e = std::min(hi, w.offsets[k + 1]) - base;
        sweep<Rule, T>(coeffs[w.group[k]], w.arrays[k], b, e);
    }
}

inline index_t share_edge(index_t total, int part, int parts) {
    if (part >= parts) return total;
    const index_t edge = index_t(double(total) * part / parts) / kGrain * kGrain;
    return std::min(edge, total);
}

// One step of Rule over the float32 and float64 arrays together.
template <class Rule>
void step_all(const Work<float>& f32, const Work<double>& f64, int threads) {
    const index_t n32 = total(f32), n64 = total(f64);
    if (threads <= 1 || n32 + 2 * n64 < kParallelMin) {
        sweep_span<Rule>(f32, 0, n32);
        sweep_span<Rule>(f64, 0, n64);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        sweep_span<Rule>(f32, share_edge(n32, t, nt), share_edge(n32, t + 1, nt));
        sweep_span<Rule>(f64, share_edge(n64, t, nt), share_edge(n64, t + 1, nt));
    }
#else
    sweep_span<Rule>(f32, 0, n32);
    sweep_span<Rule>(f64, 0, n64);
#endif
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
