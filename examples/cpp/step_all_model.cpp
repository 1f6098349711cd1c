// One Adam step over a three-array model (three_array_model.hpp) in one threaded call:
// fastoptim::step_all runs every array in one OpenMP region on all cores, with the same bits as
// the Python package's Adam on the same inputs (tests/test_cpp_package.py checks). Header-only:
// the kernels compile for this program's own flags.
//   step_all_model [steps] [out.bin]: the parameters after `steps` steps (default 10), written to
//   out.bin as float32, end to end, when given.
#include <cstdlib>

#include "three_array_model.hpp"

int main(int argc, char** argv) {
    const long steps = argc > 1 ? std::atol(argv[1]) : 10;
    ThreeArrayModel model;
    fastoptim::Adam::Hyper hyper;  // torch.optim.Adam's defaults; set what differs by name
    hyper.lr = 1e-2;
    hyper.weight_decay = 1e-3;
    const int threads = all_cores();
    model.train(steps, hyper, [&](const fastoptim::Work<float>& f32) {
        fastoptim::step_all<fastoptim::Adam>(f32, fastoptim::Work<double>{}, threads);
    });
    if (argc > 2 && !model.write(argv[2])) return 2;
    std::printf("%ld Adam steps of 3 arrays (%ld elements) on %d threads: w1[0] = %.6f\n", steps,
                long(model.offsets.back()), threads, double(model.params[0][0]));
    return 0;
}
