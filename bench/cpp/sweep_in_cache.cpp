// What one thread's AdamW sweep costs per element when its arrays sit in the cache: the
// instructions of the loop, not the memory. Beside it, the probe's sweep of the same bytes.
// Header-only (no build of the package): compile it at two commits and alternate the binaries.
//
//   F="-std=c++17 -O3 -DNDEBUG -ffp-contract=off -fno-math-errno -mavx2 -mfma -mf16c"
//   g++ $F -DFASTOPTIM_TARGET_NS=avx2 -DFASTOPTIM_X86 -Icpp/include bench/cpp/sweep_in_cache.cpp -o sweep_in_cache
//   ./sweep_in_cache 8192 20000        # elements (8192: 128 KiB of arrays), sweeps per round
//
// Prints the best of 7 rounds, with the software prefetch off and on (sweep.hpp's `prefetch`;
// a step prefetches only arrays above `prefetch_above`, so in the cache it runs the first line).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <fastoptim/probe.hpp>
#include <fastoptim/rules/adam.hpp>
#include <fastoptim/sweep.hpp>

#include "adamw_sweep_setup.hpp"

using namespace fastoptim;

template <class F>
double best_seconds(int reps, const F& f) {
    double best = 1e30;
    for (int round = 0; round < 7; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) f();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
        best = s < best ? s : best;
    }
    return best;
}

int main(int argc, char** argv) {
    const index_t n = argc > 1 ? std::atol(argv[1]) : 8192;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 20000;
    std::vector<float> p(n, 0.5f), g(n, 0.01f), m(n, 0.f), v(n, 0.f);
    const ArrayRef<float> a = adamw_arrays(p.data(), g.data(), m.data(), v.data(), n);
    const auto c = adamw_coeffs();
    void* arrays[4] = {p.data(), g.data(), m.data(), v.data()};
    for (const bool prefetch : {false, true}) {
        const double adamw = best_seconds(reps, [&] { sweep<Adam, float>(c, a, 0, n, prefetch); });
        const double probe = best_seconds(reps, [&] { probe_range<4, 3, 0, float>(arrays, n, 0, n, prefetch); });
        std::printf("n=%ld prefetch=%d  adamw %.3f ns/element (%.2f Gel/s)  probe %.3f ns/element  probe/adamw %.2f\n",
                    long(n), int(prefetch), adamw / double(n) * 1e9, double(n) / adamw / 1e9,
                    probe / double(n) * 1e9, probe / adamw);
    }
    volatile float result = p[0];  // read: the sweeps cannot be dropped
    (void)result;
}
