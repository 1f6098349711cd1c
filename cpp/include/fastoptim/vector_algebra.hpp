// The vector algebra of L-BFGS over one flat vector (all parameters end to end): out ← a·x + b·y,
// with the dot product of the result and a third vector, its largest magnitude and its sum of
// magnitudes taken in the same sweep. The two-loop recursion is a chain of such sweeps, each
// fusing one loop's update with the next loop's dot product.
//
// Sums run as the gradient norm's (grad_norm.hpp): blocks of kBlock elements, element i of a
// block in lane i mod 16, lanes added pairwise in double, blocks added in order. So the results
// are the same bits on every target and thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "matrix_passes.hpp"
#include "parallel.hpp"
#include "vec.hpp"

namespace fastoptim {

template <class T>
struct Combine {
    T* out = nullptr;  // nullptr: the sums alone
    const T* x = nullptr;
    T a = T(1);
    const T* y = nullptr;  // nullptr: out ← a·x
    T b = T(0);
    const T* z = nullptr;  // nullptr: no dot product
    index_t size = 0;
    bool want_abs = false;  // max |out| and Σ |out|
};

struct CombineSums {
    double dot = 0, abs_max = 0, abs_sum = 0;
};

FASTOPTIM_TARGET_BEGIN

template <class V, class T>
FASTOPTIM_INLINE V combined(const Combine<T>& c, index_t i) {
    const V ax = V(c.a) * V::load(c.x + i);
    return c.y ? ax + V(c.b) * V::load(c.y + i) : ax;
}

// Block `block` of the sweep: its elements written (Out), their sums into part[0..2] (Dot: Σ o·z;
// Abs: Σ |o| and max |o|). `c` by value: a store through a T* could otherwise alias its
// coefficients and pointers, reloading every one per element.
template <bool Out, bool Dot, bool Abs, class T>
void combine_block(const Combine<T> c, index_t block, double* part) {
    using V = NativeVec<T>;
    constexpr int w = V::width, groups = kLanes / w;
    const index_t first = block * kBlock, n = std::min(kBlock, c.size - first);
    if constexpr (!Dot && !Abs) {  // the update alone
        index_t i = 0;
        for (; i + 2 * w <= n; i += 2 * w) {
            combined<V>(c, first + i).store(c.out + first + i);
            combined<V>(c, first + i + w).store(c.out + first + i + w);
        }
        for (; i + w <= n; i += w) combined<V>(c, first + i).store(c.out + first + i);
        for (; i < n; ++i) combined<Scalar<T>>(c, first + i).store(c.out + first + i);
        return;
    }
    V dot[groups], abs_sum[groups], abs_max[groups];
    for (int k = 0; k < groups; ++k) dot[k] = abs_sum[k] = abs_max[k] = V(T(0));
    const index_t body = n - n % kLanes;
    for (index_t i = 0; i < body; i += kLanes)
        for (int k = 0; k < groups; ++k) {
            const index_t at = first + i + k * w;
            const V o = combined<V>(c, at);
            if constexpr (Out) o.store(c.out + at);
            if constexpr (Dot) dot[k] = dot[k] + o * V::load(c.z + at);
            if constexpr (Abs) {
                const V m = abs(o);
                abs_sum[k] = abs_sum[k] + m;
                abs_max[k] = max(abs_max[k], m);
            }
        }
    T lanes[3][kLanes];
    for (int k = 0; k < groups; ++k) {
        dot[k].store(lanes[0] + k * w);
        abs_sum[k].store(lanes[1] + k * w);
        abs_max[k].store(lanes[2] + k * w);
    }
    for (index_t i = body; i < n; ++i) {
        const index_t at = first + i;
        const Scalar<T> o = combined<Scalar<T>>(c, at);
        if constexpr (Out) o.store(c.out + at);
        if constexpr (Dot) lanes[0][i % kLanes] += o.x * c.z[at];
        if constexpr (Abs) {
            lanes[1][i % kLanes] += std::fabs(o.x);
            lanes[2][i % kLanes] = max(Scalar<T>(lanes[2][i % kLanes]), Scalar<T>(std::fabs(o.x))).x;
        }
    }
    part[0] = sum_lanes(lanes[0]);
    part[1] = sum_lanes(lanes[1]);
    part[2] = double(*std::max_element(lanes[2], lanes[2] + kLanes));
}

template <class T>
void combine_block(const Combine<T>& c, index_t block, double* part) {
    const bool out = c.out != nullptr, dot = c.z != nullptr;
    if (out && dot && c.want_abs) return combine_block<true, true, true>(c, block, part);
    if (out && dot) return combine_block<true, true, false>(c, block, part);
    if (out && c.want_abs) return combine_block<true, false, true>(c, block, part);
    if (out) return combine_block<true, false, false>(c, block, part);
    if (dot && c.want_abs) return combine_block<false, true, true>(c, block, part);
    if (dot) return combine_block<false, true, false>(c, block, part);
    if (c.want_abs) return combine_block<false, false, true>(c, block, part);
}

// A thread takes a piece of kPiece elements (as a step's sweep: a few blocks in a row), the
// blocks' sums kept apart.
inline constexpr index_t kBlocksPerPiece = kPiece / kBlock;

template <class T>
CombineSums combine(const Combine<T>& c, int threads) {
    const index_t blocks = pieces_of(c.size, kBlock);
    std::vector<double> parts(static_cast<std::size_t>(3 * blocks));
    run_pieces(threads, c.size < kParallelMin, pieces_of(blocks, kBlocksPerPiece), [&](index_t piece) {
        for (index_t block = piece * kBlocksPerPiece; block < std::min(blocks, (piece + 1) * kBlocksPerPiece); ++block)
            combine_block(c, block, parts.data() + 3 * block);
    });
    CombineSums sums;
    for (index_t block = 0; block < blocks; ++block) {
        sums.dot += parts[std::size_t(3 * block)];
        sums.abs_sum += parts[std::size_t(3 * block + 1)];
        sums.abs_max = std::max(sums.abs_max, parts[std::size_t(3 * block + 2)]);
    }
    if (std::isnan(sums.abs_sum)) sums.abs_max = sums.abs_sum;  // max() lets a NaN go; the sum keeps it
    return sums;
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
