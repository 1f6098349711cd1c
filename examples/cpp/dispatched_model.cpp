// step_all_model.cpp through fastoptim::runtime: the same Adam steps of the three-array model,
// on the kernels of the widest instruction set this CPU runs (AVX-512, AVX2 or SSE2 on x86-64),
// chosen at run time, though this program is built for the x86-64 baseline. Every target gives
// the same bits, and the Python package's (tests/test_cpp_package.py runs it as each target).
//   dispatched_model [steps] [out.bin]; FASTOPTIM_ISA=sse2 (or avx2, avx512) picks a target.
#include <fastoptim/runtime.hpp>

#include <cstdlib>

#include "three_array_model.hpp"

int main(int argc, char** argv) {
    const long steps = argc > 1 ? std::atol(argv[1]) : 10;
    ThreeArrayModel model;
    fastoptim::Adam::Hyper hyper;
    hyper.lr = 1e-2;
    hyper.weight_decay = 1e-3;
    const int threads = all_cores();
    model.train(steps, hyper, [&](const fastoptim::Work<float>& f32) {
        fastoptim::step_all_dispatched<fastoptim::Adam>(f32, fastoptim::Work<double>{}, threads);
    });
    if (argc > 2 && !model.write(argv[2])) return 2;
    std::printf("%ld Adam steps of 3 arrays on the %s kernels, %d threads: w1[0] = %.6f\n", steps,
                fastoptim::current_target().name, threads, double(model.params[0][0]));
    return 0;
}
