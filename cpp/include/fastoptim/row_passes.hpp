// Steps that read and write only some rows of each parameter: SparseAdam's lazy Adam and
// row-wise Adagrad (one accumulator per row). A parameter is a table of rows (its first
// dimension) × cols (the rest, in C order); a step names the rows it updates and gives one
// gradient row for each, or gives the whole gradient (every row).
//
// Each row is updated by one thread from its own elements alone, the same arithmetic in the
// vector body and the scalar tail, and a row's sum runs in fixed lanes (matrix_passes.hpp): the
// bits do not depend on the target, the thread count or which other rows are in the step.
#pragma once

#include <algorithm>
#include <cstdint>

#include "matrix_passes.hpp"
#include "parallel.hpp"
#include "prefetch.hpp"
#include "vec.hpp"

namespace fastoptim {

enum class RowRule : int { sparse_adam = 0, rowwise_adagrad = 1 };

// torch.optim.SparseAdam's constants, each cast to T as torch casts a Python float:
// m ← m + (g − m)·(1 − β₁); v ← v + (g² − v)·(1 − β₂); p ← p + (−step_size)·m/(√v + ε).
template <class T>
struct SparseAdamCoeffs {
    T one_minus_beta1 = T(0), one_minus_beta2 = T(0), eps = T(0), neg_step_size = T(0);
};

// Row-wise Adagrad (FBGEMM's, with torch.optim.Adagrad's hyper-parameters): g ← g + λp;
// s ← s + mean(g²) (one s per row); p ← p − clr/(√s + ε)·g.
template <class T>
struct RowwiseAdagradCoeffs {
    T weight_decay = T(0), eps = T(0), clr = T(0);
};

// One parameter's share of a step.
template <class T>
struct RowTable {
    T* param = nullptr;
    T* first = nullptr;                  // SparseAdam: exp_avg (like param); row-wise Adagrad: one sum per row
    T* second = nullptr;                 // SparseAdam: exp_avg_sq; unused otherwise
    const T* values = nullptr;           // count × cols: the gradient rows
    const std::int64_t* rows = nullptr;  // count distinct table rows; nullptr: value row k is table row k
    index_t count = 0, cols = 0;
    T mult = T(1);  // every gradient element is read as g·mult (maximize, clipping, loss scale)
    SparseAdamCoeffs<T> adam;
    RowwiseAdagradCoeffs<T> adagrad;
};

FASTOPTIM_TARGET_BEGIN

// visit(U(), i) over [0, n): full vectors, then scalars with the same arithmetic.
template <class T, class Visit>
FASTOPTIM_INLINE void along_row(index_t n, const Visit& visit) {
    using V = NativeVec<T>;
    index_t i = 0;
    for (; i + 2 * V::width <= n; i += 2 * V::width) {
        visit(V(), i);
        visit(V(), i + V::width);
    }
    for (; i + V::width <= n; i += V::width) visit(V(), i);
    for (; i < n; ++i) visit(Scalar<T>(T(0)), i);
}

// Value row k of table t: torch's lazy Adam on the row's elements.
template <class T>
void sparse_adam_row(const RowTable<T>& t, index_t k) {
    const index_t at = (t.rows ? t.rows[k] : k) * t.cols;
    T* p = t.param + at;
    T* m = t.first + at;
    T* v = t.second + at;
    const T* g = t.values + k * t.cols;
    const SparseAdamCoeffs<T> c = t.adam;
    const T mult = t.mult;
    along_row<T>(t.cols, [&](auto u, index_t i) FASTOPTIM_LAMBDA_INLINE {
        using W = decltype(u);
        const W grad = W::load(g + i) * W(mult);
        const W m_new = W::load(m + i) + (grad - W::load(m + i)) * W(c.one_minus_beta1);
        const W v_new = W::load(v + i) + (grad * grad - W::load(v + i)) * W(c.one_minus_beta2);
        m_new.store(m + i);
        v_new.store(v + i);
        (W::load(p + i) + W(c.neg_step_size) * (m_new / (sqrt(v_new) + W(c.eps)))).store(p + i);
    });
}

// Value row k of table t: the row's mean square, its sum advanced, the row stepped.
template <class T>
void rowwise_adagrad_row(const RowTable<T>& t, index_t k) {
    const index_t row = t.rows ? t.rows[k] : k;
    T* p = t.param + row * t.cols;
    const T* g = t.values + k * t.cols;
    const RowwiseAdagradCoeffs<T> c = t.adagrad;
    const T mult = t.mult;
    const auto decayed = [&](auto u, index_t i) FASTOPTIM_LAMBDA_INLINE {
        using W = decltype(u);
        return W::load(g + i) * W(mult) + W(c.weight_decay) * W::load(p + i);
    };
    const double mean_sq = t.cols == 0 ? 0.0 : lane_sum<T>(t.cols, decayed) / double(t.cols);
    const T sum = t.first[row] + T(mean_sq);
    t.first[row] = sum;
    const T scale = c.clr / (sqrt(Scalar<T>(sum)).x + c.eps);
    along_row<T>(t.cols, [&](auto u, index_t i) FASTOPTIM_LAMBDA_INLINE {
        using W = decltype(u);
        (W::load(p + i) - W(scale) * decayed(u, i)).store(p + i);
    });
}

// Rows named by a list are scattered: the hardware prefetcher sees each one too late, so the
// rows kRowsAhead ahead of the one being stepped are fetched (parameter and state).
inline constexpr index_t kRowsAhead = 4;  // measured at 1e6 x 64: 4 halves the step, 8 gains nothing more

template <class T>
FASTOPTIM_INLINE void prefetch_row_bytes(const T* p, index_t n) {
    const char* bytes = reinterpret_cast<const char*>(p);
    for (index_t b = 0; b < n * index_t(sizeof(T)); b += kLineBytes) prefetch_line(bytes + b);
    if (n > 0) prefetch_line(bytes + n * index_t(sizeof(T)) - 1);  // a row that straddles one more line
}

template <class T>
FASTOPTIM_INLINE void prefetch_row(const RowTable<T>& t, index_t k) {
    const index_t row = t.rows[k];
    prefetch_row_bytes(t.param + row * t.cols, t.cols);
    if (t.second) {  // SparseAdam: both moments are rows like the parameter's
        prefetch_row_bytes(t.first + row * t.cols, t.cols);
        prefetch_row_bytes(t.second + row * t.cols, t.cols);
    } else {
        prefetch_row_bytes(t.first + row, 1);
    }
}

// Rows per piece: about kPiece elements, at least one row.
inline index_t rows_per_piece(index_t cols) { return std::max<index_t>(1, kPiece / std::max<index_t>(cols, 1)); }

// One step of `rule` over every table of both dtypes, in one run of pieces of whole rows.
template <class Row32, class Row64>
PieceCounts step_rows(const RowTable<float>* f32, index_t n32, const RowTable<double>* f64, index_t n64,
                      int threads, const Row32& row32, const Row64& row64) {
    // A piece is a run of rows of one table; firsts[t] is table t's first piece (f32 tables, then f64).
    std::vector<index_t> firsts(static_cast<std::size_t>(n32 + n64 + 1), 0);
    index_t elements = 0;
    for (index_t t = 0; t < n32 + n64; ++t) {
        const index_t count = t < n32 ? f32[t].count : f64[t - n32].count;
        const index_t cols = t < n32 ? f32[t].cols : f64[t - n32].cols;
        firsts[std::size_t(t + 1)] = firsts[std::size_t(t)] + pieces_of(count, rows_per_piece(cols));
        elements += count * cols * (t < n32 ? 1 : 2);
    }
    return run_pieces(threads, elements < kParallelMin, firsts.back(), [&](index_t piece) {
        const index_t t = index_t(std::upper_bound(firsts.begin(), firsts.end(), piece) - firsts.begin()) - 1;
        const auto run = [&](const auto& table, const auto& row) {
            const index_t per = rows_per_piece(table.cols), lo = (piece - firsts[std::size_t(t)]) * per;
            const index_t hi = std::min(table.count, lo + per);
            for (index_t k = lo; k < hi; ++k) {
                if (table.rows && k + kRowsAhead < hi) prefetch_row(table, k + kRowsAhead);
                row(table, k);
            }
        };
        if (t < n32) run(f32[t], row32);
        else run(f64[t - n32], row64);
    });
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
