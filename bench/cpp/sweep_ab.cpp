// Two versions of the kernel headers in one process, alternated round by round: AdamW's sweep
// (float32 state and bfloat16 state, AVX-512) as built from headers A and from headers B, each
// compiled into its own target namespace, so that a change to a header is measured against the
// drift of this machine's memory bandwidth (up to 2x within minutes) rather than beside it.
//
//   F="-std=c++17 -O3 -DNDEBUG -ffp-contract=off -fno-math-errno -fopenmp -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma"
//   git worktree add /tmp/base HEAD~1          # headers A: the commit before the change
//   g++ $F -c -DFASTOPTIM_X86 -DFASTOPTIM_TARGET_NS=va -DVARIANT_FN=run_a -I/tmp/base/cpp/include bench/cpp/sweep_ab.cpp -o a.o
//   g++ $F -c -DFASTOPTIM_X86 -DFASTOPTIM_TARGET_NS=vb -DVARIANT_FN=run_b -Icpp/include bench/cpp/sweep_ab.cpp -o b.o
//   g++ $F bench/cpp/sweep_ab.cpp a.o b.o -o sweep_ab
//   ./sweep_ab 50000000 2 2 1 8     # elements, sweeps per round, threads, prefetch, rounds
//   ./sweep_ab 8192 2000 1 0 30     # in the cache: the loop's instructions
//
// Prints each build's best round per layout, and B's best bfloat16 time over A's.
#include <cstdint>

#if defined(VARIANT_FN)  // one build of the headers

#include <algorithm>

#include <omp.h>

#include <fastoptim/rules/adam.hpp>
#include <fastoptim/sweep.hpp>

#include "adamw_sweep_setup.hpp"

using namespace fastoptim;

void VARIANT_FN(float* p, float* g, void* m, void* v, long n, int threads, bool prefetch, bool bf16, int reps) {
    ArrayRef<float> a = adamw_arrays(p, g, m, v, n);
    if (bf16) a.state_format = StateFormat::bf16_nearest;
    const auto c = adamw_coeffs();
    for (int r = 0; r < reps; ++r) {
#pragma omp parallel num_threads(threads)
        {  // the runtime's split: whole vectors of 32 elements per thread
            const index_t chunk = (n / omp_get_num_threads() + 31) / 32 * 32;
            const index_t lo = std::min<index_t>(n, omp_get_thread_num() * chunk), hi = std::min<index_t>(n, lo + chunk);
            sweep<Adam, float>(c, a, lo, hi, prefetch);
        }
    }
}

#else  // the driver

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

void run_a(float*, float*, void*, void*, long, int, bool, bool, int);
void run_b(float*, float*, void*, void*, long, int, bool, bool, int);

int main(int argc, char** argv) {
    const long n = argc > 1 ? std::atol(argv[1]) : 8192;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 2000;
    const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
    const bool prefetch = argc > 4 && std::atoi(argv[4]) != 0;
    const int rounds = argc > 5 ? std::atoi(argv[5]) : 30;
    const std::size_t bytes = (std::size_t(n) * 4 + 63) / 64 * 64;
    auto floats = [&] { return static_cast<float*>(std::aligned_alloc(64, bytes)); };
    float *p = floats(), *g = floats(), *m = floats(), *v = floats(), *p16 = floats();
    auto* m16 = static_cast<std::uint16_t*>(std::aligned_alloc(64, bytes / 2 + 64));
    auto* v16 = static_cast<std::uint16_t*>(std::aligned_alloc(64, bytes / 2 + 64));
    for (long i = 0; i < n; ++i) {
        p[i] = p16[i] = 0.5f + float(i % 7) * 0.01f;
        g[i] = 0.01f * float(i % 13 - 6);
        m[i] = v[i] = 0.f;
        m16[i] = v16[i] = 0;
    }
    double best[4] = {1e30, 1e30, 1e30, 1e30};  // A f32, B f32, A bf16, B bf16
    for (int round = 0; round < rounds; ++round)
        for (int k = 0; k < 4; ++k) {
            const auto run = k % 2 == 0 ? run_a : run_b;
            const auto start = std::chrono::steady_clock::now();
            if (k < 2) run(p, g, m, v, n, threads, prefetch, false, reps);
            else run(p16, g, m16, v16, n, threads, prefetch, true, reps);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
            best[k] = std::min(best[k], s);
        }
    const char* names[4] = {"A f32", "B f32", "A bf16", "B bf16"};
    for (int k = 0; k < 4; ++k) std::printf("%s %.3f ns/element  ", names[k], best[k] / double(n) * 1e9);
    std::printf("\nbfloat16 state: B's time over A's %.3f\n", best[3] / best[2]);
}

#endif
