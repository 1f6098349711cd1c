// The element-wise passes of Adafactor and Muon (matrix_passes.hpp) for one target.
#include "fastoptim/matrix_passes.hpp"

#include "fastoptim/runtime/targets.hpp"

#define FASTOPTIM_CONCAT_(a, b) a##_##b
#define FASTOPTIM_CONCAT(a, b) FASTOPTIM_CONCAT_(a, b)

namespace fastoptim {
namespace {

template <class T>
PassSums run(const MatrixRequest& r) {
    T* param = static_cast<T*>(r.param);
    const T* grad = static_cast<const T*>(r.grad);
    const FactoredArrays<T> factored{param, grad, r.batch, r.rows, r.cols, T(r.mult),
                                     static_cast<const T*>(r.row_inv), static_cast<const T*>(r.col_inv), T(r.inv_eps)};
    const VarianceArrays<T> variance{param, grad, static_cast<T*>(r.state), r.size, T(r.mult), T(r.weight), T(r.eps_sq)};
    PassSums sums;
    switch (r.pass) {
        case MatrixPass::factored_moments:
            sums.param_sq = factored_moments(factored, r.rows_sq, r.cols_sq, r.threads);
            break;
        case MatrixPass::factored_update_sq:
            sums.update_sq = factored_update_sq(factored, r.threads);
            break;
        case MatrixPass::factored_apply:
            factored_apply(factored, T(r.decay), T(r.step), r.threads);
            break;
        case MatrixPass::variance_moments:
            sums = variance_moments(variance, r.threads);
            break;
        case MatrixPass::variance_apply:
            variance_apply(variance, T(r.decay), T(r.step), r.threads);
            break;
        case MatrixPass::muon_momentum:
            sums.update_sq = muon_momentum(MomentumArrays<T>{grad, static_cast<T*>(r.state), static_cast<T*>(r.out),
                                                             r.size, T(r.mult), T(r.momentum), T(1.0 - r.momentum),
                                                             r.nesterov},
                                           r.threads);
            break;
        case MatrixPass::decay_and_subtract:
            decay_and_subtract(param, static_cast<const T*>(r.out), r.size, T(r.decay), T(r.step), r.threads);
            break;
    }
    return sums;
}

}  // namespace

PassSums FASTOPTIM_CONCAT(matrix, FASTOPTIM_TARGET_NS)(const MatrixRequest& request) {
    return request.is_double ? run<double>(request) : run<float>(request);
}

}  // namespace fastoptim
