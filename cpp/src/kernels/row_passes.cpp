// The row-sparse steps (row_passes.hpp) for one target.
#include "fastoptim/row_passes.hpp"

#include "fastoptim/runtime/targets.hpp"

#define FASTOPTIM_CONCAT_(a, b) a##_##b
#define FASTOPTIM_CONCAT(a, b) FASTOPTIM_CONCAT_(a, b)

namespace fastoptim {

PieceCounts FASTOPTIM_CONCAT(rows, FASTOPTIM_TARGET_NS)(const RowsRequest& r) {
    if (r.rule == RowRule::sparse_adam)
        return step_rows(r.f32, r.n32, r.f64, r.n64, r.threads, &sparse_adam_row<float>, &sparse_adam_row<double>);
    return step_rows(r.f32, r.n32, r.f64, r.n64, r.threads, &rowwise_adagrad_row<float>,
                     &rowwise_adagrad_row<double>);
}

}  // namespace fastoptim
