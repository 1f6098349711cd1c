// The element-wise passes of the rules whose step is not element-wise (Adafactor, Muon): their
// state is not shaped like the parameter, or a matrix product sits between the passes, so the
// plan's one-sweep step does not carry them. Each pass reads and writes whole arrays, the
// small factored vectors and the matrix products staying with the caller (NumPy).
//
// Sums are taken as the gradient norm's (grad_norm.hpp): element i of a row or a block goes to
// lane i mod 16, the lanes added pairwise in double, rows and blocks then added in order; a
// column's sum runs down kFactorRows rows in T, then into a double per block of rows whose
// size depends on the shape alone, the blocks added in order. So every pass gives the same
// bits on every target and thread count.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "parallel.hpp"
#include "rule.hpp"
#include "vec.hpp"

namespace fastoptim {

// One factored array: `batch` matrices of rows × cols, C order (a parameter of ndim ≥ 2 seen as
// its last two dimensions). Element (i, j) of matrix b has the variance r·c, r its row's factor
// (the row's second moment over the rows' mean) and c its column's, clamped below at ε₁²; the
// update divides by its root, as 1/√max(r·c, ε₁²) = min(1/√r · 1/√c, 1/ε₁): three products and
// a minimum where a square root and a division would bound the pass by arithmetic, not memory.
// row_inv[b·rows + i] is 1/√r, col_inv[b·cols + j] 1/√c.
template <class T>
struct FactoredArrays {
    T* param = nullptr;
    const T* grad = nullptr;
    index_t batch = 0, rows = 0, cols = 0;
    T mult = T(1);  // every gradient element is read as g·mult (maximize, clipping, loss scale)
    const T* row_inv = nullptr;
    const T* col_inv = nullptr;
    T inv_eps = T(0);  // 1/ε₁ (infinite for ε₁ = 0)
};

// What the passes of one call give back: sums of squares, not yet rooted.
struct PassSums {
    double param_sq = 0, update_sq = 0;
};

inline constexpr index_t kFactorRows = 32;     // rows a column's sum runs down in T
inline constexpr index_t kFactorBlocks = 64;  // blocks of rows per matrix, at most

FASTOPTIM_TARGET_BEGIN

// Pairwise sum of 16 lanes in double.
template <class T>
double sum_lanes(const T* lanes) {
    double sum[kLanes];
    for (int l = 0; l < kLanes; ++l) sum[l] = double(lanes[l]);
    for (int half = kLanes / 2; half >= 1; half /= 2)
        for (int l = 0; l < half; ++l) sum[l] += sum[l + half];
    return sum[0];
}

// Σ f(i)² over [0, n) for each f of `fs` (one sweep), element i in lane i mod 16, f given as
// f(V, i) on V::width elements. Never prefetched: the hardware's prefetchers follow these sweeps
// better (measured: software prefetching 2048 bytes ahead took the first pass from 90% of the
// probe to 72-85%).
template <class T, class... F>
FASTOPTIM_INLINE std::array<double, sizeof...(F)> lane_sums(index_t n, const F&... fs) {
    using V = NativeVec<T>;
    constexpr int w = V::width, groups = kLanes / w, m = int(sizeof...(F));
    V acc[m][groups];
    for (auto& sums : acc)
        for (V& a : sums) a = V(T(0));
    const index_t body = n - n % kLanes;
    for (index_t i = 0; i < body; i += kLanes)
        for (int k = 0; k < groups; ++k) {
            int s = 0;
            ((acc[s][k] = acc[s][k] + [&] { const V x = fs(V(), i + k * w); return x * x; }(), ++s), ...);
        }
    T lanes[m][kLanes];
    for (int s = 0; s < m; ++s)
        for (int k = 0; k < groups; ++k) acc[s][k].store(lanes[s] + k * w);
    for (index_t i = body; i < n; ++i) {
        int s = 0;
        ((lanes[s][i % kLanes] += [&] { const Scalar<T> x = fs(Scalar<T>(T(0)), i); return x.x * x.x; }(), ++s), ...);
    }
    std::array<double, sizeof...(F)> sums;
    for (int s = 0; s < m; ++s) sums[std::size_t(s)] = sum_lanes(lanes[s]);
    return sums;
}

template <class T, class F>
FASTOPTIM_INLINE double lane_sum(index_t n, const F& f) {
    return lane_sums<T>(n, f)[0];
}

// min(1/ε₁, ·) first: a NaN factor (from NaN gradients earlier) stays NaN, as torch's clamp keeps it.
template <class V, class T>
FASTOPTIM_INLINE V factored_update(const FactoredArrays<T>& a, index_t row, index_t at, index_t col) {
    const V u = V::load(a.grad + at) * V(a.mult);
    return u * min(V(a.inv_eps), V(a.row_inv[row]) * V::load(a.col_inv + col));
}

// Adafactor's first pass: Σp² and, per row and per column, Σu² (u = g·mult). `rows_sq` holds
// batch·rows sums, `cols_sq` batch·cols. At most kFactorBlocks blocks of rows per matrix keep
// the blocks' column sums, added in order at the end, a small part of the pass.
template <class T>
double factored_moments(const FactoredArrays<T>& a, double* rows_sq, double* cols_sq, int threads) {
    if (a.batch * a.rows * a.cols == 0) {  // no element: every sum is 0 (and no block to cut)
        std::fill(rows_sq, rows_sq + a.batch * a.rows, 0.0);
        std::fill(cols_sq, cols_sq + a.batch * a.cols, 0.0);
        return 0.0;
    }
    const index_t rows_per = pieces_of(pieces_of(a.rows, kFactorBlocks), kFactorRows) * kFactorRows;
    const index_t blocks_per = pieces_of(a.rows, rows_per), blocks = a.batch * blocks_per;
    std::vector<double> col_part(static_cast<std::size_t>(blocks * a.cols));
    std::vector<double> param_part(static_cast<std::size_t>(blocks));
    std::vector<T> runs(static_cast<std::size_t>(blocks * a.cols));  // allocated here: never inside the region
    const T mult = a.mult;
    run_pieces(threads, a.batch * a.rows * a.cols < kParallelMin, blocks, [&](index_t block) {
        const index_t b = block / blocks_per, first_row = (block % blocks_per) * rows_per;
        const index_t end_row = std::min(a.rows, first_row + rows_per);
        double* cols = col_part.data() + block * a.cols;
        T* run = runs.data() + block * a.cols;
        double param_sq = 0;
        for (index_t r0 = first_row; r0 < end_row; r0 += kFactorRows) {
            std::fill(run, run + a.cols, T(0));
            for (index_t r = r0; r < std::min(end_row, r0 + kFactorRows); ++r) {
                const index_t row = b * a.rows + r, first = row * a.cols;
                const auto sums = lane_sums<T>(a.cols, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
                    using W = decltype(v);
                    const W u = W::load(a.grad + first + i) * W(mult);
                    (W::load(run + i) + u * u).store(run + i);
                    return u;
                }, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE { return decltype(v)::load(a.param + first + i); });
                rows_sq[row] = sums[0];
                param_sq += sums[1];
            }
            for (index_t j = 0; j < a.cols; ++j) cols[j] += double(run[j]);
        }
        param_part[std::size_t(block)] = param_sq;
    });
    double param_sq = 0;
    for (index_t b = 0; b < a.batch; ++b) {
        double* out = cols_sq + b * a.cols;
        std::fill(out, out + a.cols, 0.0);
        for (index_t k = 0; k < blocks_per; ++k) {
            const double* cols = col_part.data() + (b * blocks_per + k) * a.cols;
            for (index_t j = 0; j < a.cols; ++j) out[j] += cols[j];
            param_sq += param_part[std::size_t(b * blocks_per + k)];
        }
    }
    return param_sq;
}

// Σ of the update's squares, u = g·mult·min(1/ε₁, row_inv·col_inv), rows summed in order.
template <class T>
double factored_update_sq(const FactoredArrays<T>& a, int threads) {
    const index_t rows = a.batch * a.rows;
    std::vector<double> row_part(static_cast<std::size_t>(rows));
    run_pieces(threads, rows * a.cols < kParallelMin, pieces_of(rows, kFactorRows), [&](index_t piece) {
        for (index_t row = piece * kFactorRows; row < std::min(rows, (piece + 1) * kFactorRows); ++row) {
            const index_t first = row * a.cols, cols = (row / a.rows) * a.cols;
            row_part[std::size_t(row)] = lane_sum<T>(a.cols, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
                return factored_update<decltype(v)>(a, row, first + i, cols + i);
            });
        }
    });
    double sum = 0;
    for (const double s : row_part) sum += s;
    return sum;
}

// p ← p·decay − step·u.
template <class T, class V = NativeVec<T>>
void factored_apply(const FactoredArrays<T>& a, T decay, T step, int threads) {
    const index_t rows = a.batch * a.rows;
    run_pieces(threads, rows * a.cols < kParallelMin, pieces_of(rows, kFactorRows), [&](index_t piece) {
        for (index_t row = piece * kFactorRows; row < std::min(rows, (piece + 1) * kFactorRows); ++row) {
            const index_t first = row * a.cols, cols = (row / a.rows) * a.cols;
            const auto visit = [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
                using W = decltype(v);
                const W p = W::load(a.param + first + i) * W(decay);
                (p - W(step) * factored_update<W>(a, row, first + i, cols + i)).store(a.param + first + i);
            };
            index_t i = 0;
            for (; i + V::width <= a.cols; i += V::width) visit(V(), i);
            for (; i < a.cols; ++i) visit(Scalar<T>(T(0)), i);
        }
    });
}

// An unfactored array (ndim < 2): its variance v like the parameter.
template <class T>
struct VarianceArrays {
    T* param = nullptr;
    const T* grad = nullptr;
    T* variance = nullptr;
    index_t size = 0;
    T mult = T(1);
    T weight = T(0);  // v ← lerp(v, u², weight), torch's lerp
    T eps_sq = T(0);
};

template <class V, class T>
FASTOPTIM_INLINE V variance_update(const VarianceArrays<T>& a, index_t i) {
    // max(ε₁², v), not max(v, ε₁²): a NaN v stays NaN, as torch's clamp keeps it.
    return V::load(a.grad + i) * V(a.mult) / sqrt(max(V(a.eps_sq), V::load(a.variance + i)));
}

// Advances v and returns Σp² and Σu², in blocks of kBlock summed in order.
template <class T>
PassSums variance_moments(const VarianceArrays<T>& a, int threads) {
    const index_t blocks = pieces_of(a.size, kBlock);
    std::vector<double> parts(static_cast<std::size_t>(2 * blocks));
    run_pieces(threads, a.size < kParallelMin, blocks, [&](index_t block) {
        const index_t first = block * kBlock, n = std::min(kBlock, a.size - first);
        parts[std::size_t(2 * block)] = lane_sum<T>(n, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
            return decltype(v)::load(a.param + first + i);
        });
        parts[std::size_t(2 * block + 1)] = lane_sum<T>(n, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
            using W = decltype(v);
            const W u = W::load(a.grad + first + i) * W(a.mult);
            lerp_toward(W::load(a.variance + first + i), u * u, a.weight).store(a.variance + first + i);
            return variance_update<W>(a, first + i);
        });
    });
    PassSums sums;
    for (index_t block = 0; block < blocks; ++block) {
        sums.param_sq += parts[std::size_t(2 * block)];
        sums.update_sq += parts[std::size_t(2 * block + 1)];
    }
    return sums;
}

template <class T, class V = NativeVec<T>>
void variance_apply(const VarianceArrays<T>& a, T decay, T step, int threads) {
    run_pieces(threads, a.size < kParallelMin, pieces_of(a.size, kPiece), [&](index_t piece) {
        const index_t lo = piece * kPiece, hi = std::min(a.size, lo + kPiece);
        const auto visit = [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
            using W = decltype(v);
            const W p = W::load(a.param + i) * W(decay);
            (p - W(step) * variance_update<W>(a, i)).store(a.param + i);
        };
        index_t i = lo;
        for (; i + V::width <= hi; i += V::width) visit(V(), i);
        for (; i < hi; ++i) visit(Scalar<T>(T(0)), i);
    });
}

// Muon's momentum, as torch: buf ← lerp(buf, u, 1 − μ); out ← lerp(u, buf, μ) (Nesterov) or buf.
// Returns Σout², which the Newton–Schulz iteration divides by.
template <class T>
struct MomentumArrays {
    const T* grad = nullptr;
    T* buffer = nullptr;
    T* out = nullptr;
    index_t size = 0;
    T mult = T(1);
    T momentum = T(0);
    T keep = T(1);  // 1 − μ, rounded from double as torch's weight is
    bool nesterov = true;
};

template <class T>
double muon_momentum(const MomentumArrays<T>& a, int threads) {
    const index_t blocks = pieces_of(a.size, kBlock);
    std::vector<double> parts(static_cast<std::size_t>(blocks));
    const T keep = a.keep;
    run_pieces(threads, a.size < kParallelMin, blocks, [&](index_t block) {
        const index_t first = block * kBlock, n = std::min(kBlock, a.size - first);
        parts[std::size_t(block)] = lane_sum<T>(n, [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
            using W = decltype(v);
            const W u = W::load(a.grad + first + i) * W(a.mult);
            const W buf = lerp_toward(W::load(a.buffer + first + i), u, keep);
            buf.store(a.buffer + first + i);
            const W out = a.nesterov ? lerp_toward(u, buf, a.momentum) : buf;
            out.store(a.out + first + i);
            return out;
        });
    });
    double sum = 0;
    for (const double s : parts) sum += s;
    return sum;
}

// p ← p·decay − step·x.
template <class T, class V = NativeVec<T>>
void decay_and_subtract(T* param, const T* x, index_t size, T decay, T step, int threads) {
    run_pieces(threads, size < kParallelMin, pieces_of(size, kPiece), [&](index_t piece) {
        const index_t lo = piece * kPiece, hi = std::min(size, lo + kPiece);
        const auto visit = [&](auto v, index_t i) FASTOPTIM_LAMBDA_INLINE {
            using W = decltype(v);
            (W::load(param + i) * W(decay) - W(step) * W::load(x + i)).store(param + i);
        };
        index_t i = lo;
        for (; i + V::width <= hi; i += V::width) visit(V(), i);
        for (; i < hi; ++i) visit(Scalar<T>(T(0)), i);
    });
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
