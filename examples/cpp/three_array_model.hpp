// The three-array model (a 64 x 32 weight, its bias, a 32 x 10 weight) that step_all_model.cpp
// and dispatched_model.cpp step with Adam, its gradients, and the output both write. Its values
// are exact float32 numbers from integers, so that a NumPy twin computes the same inputs
// (tests/test_cpp_package.py).
#pragma once

#include <fastoptim/fastoptim.hpp>

#include <cstdio>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

struct ThreeArrayModel {
    static constexpr int count = 3;
    const fastoptim::index_t sizes[count] = {64 * 32, 32, 32 * 10};
    std::vector<float> params[count], grads[count], exp_avg[count], exp_avg_sq[count];
    std::vector<fastoptim::ArrayRef<float>> arrays{count};
    std::vector<fastoptim::index_t> offsets{0};
    const int group[count] = {0, 0, 0};  // one param group: one set of coefficients

    static float value(long i, long salt) { return float((i * 37 + salt * 11) % 101 - 50) / 64.0f; }

    ThreeArrayModel() {
        for (int k = 0; k < count; ++k) {
            const std::size_t n = std::size_t(sizes[k]);
            params[k].resize(n);
            for (std::size_t i = 0; i < n; ++i) params[k][i] = value(long(i), k);
            grads[k].assign(n, 0.0f);
            exp_avg[k].assign(n, 0.0f);
            exp_avg_sq[k].assign(n, 0.0f);
            arrays[std::size_t(k)].param = params[k].data();
            arrays[std::size_t(k)].grad = grads[k].data();
            arrays[std::size_t(k)].state[0] = exp_avg[k].data();
            arrays[std::size_t(k)].state[1] = exp_avg_sq[k].data();
            arrays[std::size_t(k)].size = sizes[k];
            offsets.push_back(offsets.back() + sizes[k]);
        }
    }
    ThreeArrayModel(const ThreeArrayModel&) = delete;  // `arrays` points into this model's own vectors
    ThreeArrayModel& operator=(const ThreeArrayModel&) = delete;

    void compute_grads(long step) {  // stands in for a backward pass
        for (int k = 0; k < count; ++k)
            for (std::size_t i = 0; i < grads[k].size(); ++i) grads[k][i] = value(long(i) + step, k + 3);
    }

    // The model's arrays with one group's coefficients: what one threaded call steps.
    fastoptim::Work<float> work(const fastoptim::Adam::Coeffs<float>* coeffs) {
        fastoptim::Work<float> f32;
        f32.arrays = arrays.data();
        f32.offsets = offsets.data();
        f32.group = group;
        f32.coeffs = coeffs;
        f32.count = count;
        return f32;
    }

    // `steps` steps of Adam: each folds the step's coefficients, then hands the model's arrays to
    // `step_all`, one call for every array.
    template <class StepAll>
    void train(long steps, const fastoptim::Adam::Hyper& hyper, StepAll&& step_all) {
        for (long step = 1; step <= steps; ++step) {
            compute_grads(step);
            const fastoptim::Adam::Coeffs<float> coeffs[1] = {fastoptim::Adam::fold<float>(hyper, {step, step == 1})};
            step_all(work(coeffs));
        }
    }

    bool write(const char* path) const {  // the parameters as float32, end to end
        std::FILE* out = std::fopen(path, "wb");
        if (!out) return false;
        for (int k = 0; k < count; ++k) std::fwrite(params[k].data(), sizeof(float), params[k].size(), out);
        return std::fclose(out) == 0;
    }
};

inline int all_cores() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}
