// One Adam step over a three-array model (a 64 x 32 weight, its bias, a 32 x 10 weight) in one
// threaded call: fastoptim::step_all runs every array in one OpenMP region on all cores, with the
// same bits as the Python package's Adam on the same inputs (tests/test_cpp_package.py checks).
//   step_all_model [steps] [out.bin]: the parameters after `steps` steps (default 10), written to
//   out.bin as float32, end to end, when given.
#include <fastoptim/fastoptim.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

// Exact float32 values from integers, so that a NumPy twin computes the same inputs.
static float value(long i, long salt) { return float((i * 37 + salt * 11) % 101 - 50) / 64.0f; }

int main(int argc, char** argv) {
    const long steps = argc > 1 ? std::atol(argv[1]) : 10;
    const fastoptim::index_t sizes[3] = {64 * 32, 32, 32 * 10};
    std::vector<std::vector<float>> params(3), grads(3), exp_avg(3), exp_avg_sq(3);
    std::vector<fastoptim::ArrayRef<float>> arrays(3);
    std::vector<fastoptim::index_t> offsets{0};
    for (int k = 0; k < 3; ++k) {
        params[k].resize(std::size_t(sizes[k]));
        for (long i = 0; i < sizes[k]; ++i) params[k][std::size_t(i)] = value(i, k);
        grads[k].assign(std::size_t(sizes[k]), 0.0f);
        exp_avg[k].assign(std::size_t(sizes[k]), 0.0f);
        exp_avg_sq[k].assign(std::size_t(sizes[k]), 0.0f);
        arrays[k].param = params[k].data();
        arrays[k].grad = grads[k].data();
        arrays[k].state[0] = exp_avg[k].data();
        arrays[k].state[1] = exp_avg_sq[k].data();
        arrays[k].size = sizes[k];
        offsets.push_back(offsets.back() + sizes[k]);
    }
    const int group[3] = {0, 0, 0};  // one param group: one set of coefficients
    fastoptim::Adam::Hyper hyper;     // torch.optim.Adam's defaults; set what differs by name
    hyper.lr = 1e-2;
    hyper.weight_decay = 1e-3;
#if defined(_OPENMP)
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    for (long step = 1; step <= steps; ++step) {
        for (int k = 0; k < 3; ++k)  // this step's gradients
            for (long i = 0; i < sizes[k]; ++i) grads[k][std::size_t(i)] = value(i + step, k + 3);
        const fastoptim::Adam::Coeffs<float> coeffs[1] = {fastoptim::Adam::fold<float>(hyper, {step, step == 1})};
        fastoptim::Work<float> f32;
        f32.arrays = arrays.data();
        f32.offsets = offsets.data();
        f32.group = group;
        f32.coeffs = coeffs;
        f32.count = 3;
        fastoptim::step_all<fastoptim::Adam>(f32, fastoptim::Work<double>{}, threads);
    }
    if (argc > 2) {
        std::FILE* out = std::fopen(argv[2], "wb");
        if (!out) return 2;
        for (int k = 0; k < 3; ++k) std::fwrite(params[k].data(), sizeof(float), params[k].size(), out);
        std::fclose(out);
    }
    std::printf("%ld Adam steps of 3 arrays (%ld elements) on %d threads: w1[0] = %.6f\n", steps,
                long(offsets.back()), threads, double(params[0][0]));
    return 0;
}
