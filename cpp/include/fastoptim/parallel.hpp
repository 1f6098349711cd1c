// One step over many arrays: one OpenMP region for all of them, not one per array.
//
// The arrays of one dtype are laid end to end in a single index space (prefix offsets), cut
// into pieces of kPiece elements. Each thread owns a contiguous run of pieces and, done with
// it, takes the untaken pieces of the others: the calling thread starts at once while the
// others wake (tens of microseconds in a VM), and a thread whose core is busy with another
// program takes fewer pieces instead of holding the step up.
// Element-wise rules give the same bits whatever the cut.
//
// Rules that scale each array by a ratio of norms (LAMB, LARS) first measure fixed blocks of
// kBlock elements, each summed in 16 fixed lanes whatever the vector width, then add the
// block sums in order: the norms, and so the bits, depend on neither the target nor the
// thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <type_traits>

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

// How one pass was shared: its pieces, the most any one thread took, and whether it ran on more
// than one thread. A pass whose busiest thread took nearly every piece gained nothing from the
// others (they woke late), and the caller may run the next ones alone (cpp/src/thread_backoff.hpp).
// Plain data like Work: it crosses from every target back to the dispatcher.
struct PieceCounts {
    index_t pieces = 0;
    index_t busiest = 0;
    bool parallel = false;
};

FASTOPTIM_TARGET_BEGIN

// float32 elements per piece: 64 KiB per array, a few hundred KiB per piece across a rule's
// arrays (within any L2), and enough pieces to even out a late thread.
inline constexpr index_t kPiece = 1 << 14;
inline constexpr index_t kParallelMin = 1 << 15;  // elements below which threads cost more than they give
inline constexpr index_t kBlock = 4096;           // elements per partial norm
inline constexpr int kLanes = 16;                 // accumulators per block, for every width

template <class T>
index_t total(const Work<T>& w) { return w.count ? w.offsets[w.count] : 0; }

template <class T>
index_t total_blocks(const Work<T>& w) { return w.count ? w.block_offsets[w.count] : 0; }

template <class Rule, class T>
const typename Rule::template Coeffs<T>& coeffs_of(const Work<T>& w, index_t k) {
    return static_cast<const typename Rule::template Coeffs<T>*>(w.coeffs)[w.group[k]];
}

// Every byte of the arrays a step reads: with the cache size, whether it prefetches.
template <class T>
index_t bytes_of(const Work<T>& w) {
    index_t bytes = 0;
    for (index_t k = 0; k < w.count; ++k) bytes += bytes_of(w.arrays[k]);
    return bytes;
}

// An array with 8-bit state is updated a block at a time: a piece takes the blocks that start
// within it, so every block is one piece's.
template <class T>
index_t block_start(const ArrayRef<T>& a, index_t i) {
    if (a.state_format != StateFormat::int8 || i == a.size) return i;
    return std::min(a.size, (i + kCodeBlock - 1) / kCodeBlock * kCodeBlock);
}

// Sweep elements [lo, hi) of the concatenated index space.
template <class Rule, class T>
void sweep_span(const Work<T>& w, index_t lo, index_t hi, bool prefetch) {
    if (lo >= hi) return;
    index_t k = std::upper_bound(w.offsets, w.offsets + w.count + 1, lo) - w.offsets - 1;
    for (; k < w.count && w.offsets[k] < hi; ++k) {
        const index_t base = w.offsets[k];
        const ArrayRef<T>& a = w.arrays[k];
        const index_t b = block_start(a, std::max(lo, base) - base);
        const index_t e = block_start(a, std::min(hi, w.offsets[k + 1]) - base);
        if (b < e) sweep<Rule, T>(coeffs_of<Rule>(w, k), a, b, e, prefetch);
    }
}

// The sums of squares Rule::measure gives for elements [lo, hi) of one array (Rule::measure_stored
// with `Stored`): element i goes to lane (i − lo) mod 16, lanes are added pairwise in double.
template <class Rule, class T, class A, class V = NativeVec<T>, bool Stored = false>
void measure_block(const typename Rule::template Coeffs<T>& c, const A& a, index_t lo, index_t hi,
                   bool prefetch, double* out) {
    constexpr int n_norms = Rule::norms, w = V::width, groups = kLanes / w;
    static_assert(kLanes % w == 0, "vector width must divide the lane count");
    V acc[n_norms][groups];
    for (auto& row : acc)
        for (V& v : row) v = V(T(0));
    const Streams<T> streams = streams_of(a, prefetch, true, Rule::measure_reads_state ? kMaxStateSlots : Rule::measured_slots);
    index_t i = lo;
    for (; i + kLanes <= hi; i += kLanes) {
        if (streams.count > 0 && i + Streams<T>::ahead + kLanes <= a.size) streams.template fetch<kLanes>(i);
        for (int g = 0; g < groups; ++g) {
            V squares[n_norms];
            if constexpr (Stored) Rule::template measure_stored<V>(c, a, i + g * w, squares);
            else Rule::template measure<V>(c, a, i + g * w, squares);
            for (int n = 0; n < n_norms; ++n) acc[n][g] = acc[n][g] + squares[n];
        }
    }
    T lanes[n_norms][kLanes];
    for (int n = 0; n < n_norms; ++n)
        for (int g = 0; g < groups; ++g) acc[n][g].store(lanes[n] + g * w);
    for (; i < hi; ++i) {
        Scalar<T> squares[n_norms];
        if constexpr (Stored) Rule::template measure_stored<Scalar<T>>(c, a, i, squares);
        else Rule::template measure<Scalar<T>>(c, a, i, squares);
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

// measure_block over [begin, end) of an array with 8-bit state, one block of codes at a time,
// the block sums added in order. A pass that advances the state (LAMB's) requantizes each block
// and then measures it as stored, as the update pass will read it. `View`: CodedAs, or
// BfloatParams of it.
template <class Rule, class T, class View>
void measure_coded(const typename Rule::template Coeffs<T>& c, const ArrayRef<T>& a, index_t begin, index_t end,
                   bool prefetch, double* out) {
    alignas(64) float buffer[kMaxStateSlots * kCodeBlock];
    bool written[kMaxStateSlots];
    View view(a, buffer, written);
    for (int n = 0; n < Rule::norms; ++n) out[n] = 0.0;
    for (index_t lo = begin; lo < end; lo += kCodeBlock) {
        const index_t hi = std::min(end, lo + kCodeBlock);
        double part[Rule::norms];
        view.open(lo);
        measure_block<Rule, T>(c, view, lo, hi, prefetch, part);
        if constexpr (Rule::measured_slots > 0) {
            view.template close<NativeVec<T>>(hi - lo);
            view.open(lo);
            measure_block<Rule, T, View, NativeVec<T>, true>(c, view, lo, hi, false, part);
        }
        for (int n = 0; n < Rule::norms; ++n) out[n] += part[n];
    }
}

// measure_block over [begin, end) of a float32-arithmetic array seen through `Params` (as
// sweep_formats): the norm pass may store state (LAMB's m and v), as its format says. A block
// lies within one stretch of 2^32 indices: first_index is a multiple of kBlock for rules with
// norms (Plan::set_counters checks it), so one setting of the keys serves it.
template <class Rule, template <class> class Params>
void measure_formats(const typename Rule::template Coeffs<float>& c, const ArrayRef<float>& a, index_t begin,
                     index_t end, bool prefetch, double* out) {
    const auto measure = [&](auto view) {
        if (draws(view)) view.set_keys(std::uint64_t(a.first_index + begin) >> 32);
        measure_block<Rule, float>(c, view, begin, end, prefetch, out);
    };
    switch (a.state_format) {
        case StateFormat::bf16_nearest: return measure(Params<StoredAs<float, StateFormat::bf16_nearest>>(a));
        case StateFormat::bf16_stochastic: return measure(Params<StoredAs<float, StateFormat::bf16_stochastic>>(a));
        case StateFormat::int8:
            return measure_coded<Rule, float, Params<CodedAs<float, unsigned_slots<Rule>()>>>(c, a, begin, end, prefetch, out);
        case StateFormat::native:
            if constexpr (Params<ArrayRef<float>>::kBfloat16Params) return measure(Params<ArrayRef<float>>(a));
            else return measure_block<Rule, float>(c, a, begin, end, prefetch, out);
    }
}

// Measure blocks [lo, hi) of the concatenated block space.
template <class Rule, class T>
void measure_span(const Work<T>& w, index_t lo, index_t hi, bool prefetch) {
    if (lo >= hi) return;
    index_t k = std::upper_bound(w.block_offsets, w.block_offsets + w.count + 1, lo) - w.block_offsets - 1;
    for (index_t b = lo; b < hi; ++b) {
        while (w.block_offsets[k + 1] <= b) ++k;
        const index_t begin = (b - w.block_offsets[k]) * kBlock;
        const index_t end = std::min(begin + kBlock, w.arrays[k].size);
        const ArrayRef<T>& a = w.arrays[k];
        double* out = w.partials + b * Rule::norms;
        if constexpr (std::is_same_v<T, float>) {
            if (a.param_bits) {
                measure_formats<Rule, BfloatParams>(coeffs_of<Rule>(w, k), a, begin, end, prefetch, out);
                continue;
            }
            if (a.state_format != StateFormat::native) {
                measure_formats<Rule, OwnParams>(coeffs_of<Rule>(w, k), a, begin, end, prefetch, out);
                continue;
            }
        }
        measure_block<Rule, T>(coeffs_of<Rule>(w, k), a, begin, end, prefetch, out);
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

// task(piece) for every piece in [0, pieces): on the calling thread alone when the work is too
// small to pay for waking the others, else on `threads` threads in one OpenMP region. Each
// thread of the team owns one contiguous run of the pieces and takes them in order (each core
// streams one stretch of memory, as torch's halves do: interleaved pieces cost a fifth of two
// threads' bandwidth here, bench/thread_split.py); a thread done with its own run takes the
// next untaken pieces of the others', so a thread that wakes late or shares its core with
// another program does less instead of holding the step up. `backwards`: each run is taken
// last piece first, so that a pass ends each thread where the next pass starts it.
template <class Task>
PieceCounts run_pieces(int threads, bool small, index_t pieces, const Task& task, bool backwards = false) {
#if defined(_OPENMP)
    if (threads > 1 && !small && pieces > 1) {
        struct alignas(64) Cursor {
            std::atomic<index_t> taken{0};
        };
        // No allocation for the usual team; one for a team larger than any core count here.
        constexpr int kOnStack = 32;
        Cursor on_stack[kOnStack];
        const std::unique_ptr<Cursor[]> on_heap(threads > kOnStack ? new Cursor[threads] : nullptr);
        Cursor* const cursors = on_heap ? on_heap.get() : on_stack;
        std::atomic<index_t> busiest{0};
        int team = 1;
#pragma omp parallel num_threads(threads)
        {
            const int size = omp_get_num_threads(), me = omp_get_thread_num();
            if (me == 0) team = size;
            index_t mine = 0;
            for (int k = 0; k < size; ++k) {
                const int owner = (me + k) % size;
                const index_t begin = pieces * owner / size, end = pieces * (owner + 1) / size;
                for (index_t n; (n = cursors[owner].taken.fetch_add(1, std::memory_order_relaxed)) < end - begin; ++mine)
                    task(backwards ? end - 1 - n : begin + n);
            }
            index_t most = busiest.load(std::memory_order_relaxed);
            while (mine > most && !busiest.compare_exchange_weak(most, mine, std::memory_order_relaxed)) {
            }
        }
        return {pieces, busiest.load(std::memory_order_relaxed), team > 1};
    }
#else
    (void)threads;
    (void)small;
#endif
    for (index_t n = 0; n < pieces; ++n) task(backwards ? pieces - 1 - n : n);
    return {pieces, pieces, false};
}

inline index_t pieces_of(index_t n, index_t piece) { return (n + piece - 1) / piece; }

// f32(lo, hi) over [0, n32) in pieces of `piece` and f64(lo, hi) over [0, n64) in pieces of
// half that (the same bytes), all in one run_pieces.
template <class F32, class F64>
PieceCounts run_split(int threads, bool small, index_t n32, index_t n64, index_t piece, const F32& f32, const F64& f64) {
    const index_t half = std::max<index_t>(piece / 2, 1);
    const index_t p32 = pieces_of(n32, piece), p64 = pieces_of(n64, half);
    return run_pieces(threads, small, p32 + p64, [&](index_t p) {
        if (p < p32)
            f32(p * piece, std::min(n32, (p + 1) * piece));
        else
            f64((p - p32) * half, std::min(n64, (p - p32 + 1) * half));
    });
}

// One step of Rule over the float32 and float64 arrays together, prefetched when their arrays
// add up to more than `prefetch_above` bytes (prefetch.hpp). Returns how the update pass was shared.
template <class Rule>
PieceCounts step_all(const Work<float>& f32, const Work<double>& f64, int threads,
                     index_t prefetch_above = kDefaultPrefetchAbove) {
    const index_t n32 = total(f32), n64 = total(f64);
    const bool small = n32 + 2 * n64 < kParallelMin;
    const bool prefetch = bytes_of(f32) + bytes_of(f64) > prefetch_above;
    if constexpr (Rule::norms > 0) {
        // Blocks of kBlock elements, measured in any order; their sums are added in block order.
        run_split(threads, small, total_blocks(f32), total_blocks(f64), kPiece / kBlock,
                  [&](index_t lo, index_t hi) { measure_span<Rule>(f32, lo, hi, prefetch); },
                  [&](index_t lo, index_t hi) { measure_span<Rule>(f64, lo, hi, prefetch); });
        finish_norms<Rule>(f32);
        finish_norms<Rule>(f64);
    }
    return run_split(threads, small, n32, n64, kPiece,
                     [&](index_t lo, index_t hi) { sweep_span<Rule>(f32, lo, hi, prefetch); },
                     [&](index_t lo, index_t hi) { sweep_span<Rule>(f64, lo, hi, prefetch); });
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
