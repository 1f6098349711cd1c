#include "fastoptim/runtime/cpu.hpp"

#include <cstdlib>
#include <stdexcept>

#include "target_entries.hpp"

#if defined(FASTOPTIM_X86)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace fastoptim {
namespace {

#if defined(FASTOPTIM_X86)
struct Registers {
    unsigned a = 0, b = 0, c = 0, d = 0;
};

Registers cpuid(unsigned leaf, unsigned subleaf) {
    Registers r;
#if defined(_MSC_VER)
    int out[4];
    __cpuidex(out, int(leaf), int(subleaf));
    r = {unsigned(out[0]), unsigned(out[1]), unsigned(out[2]), unsigned(out[3])};
#else
    __cpuid_count(leaf, subleaf, r.a, r.b, r.c, r.d);
#endif
    return r;
}

// Which register states the OS saves on a context switch (XCR0): a CPU may have AVX-512 and
// still not be allowed to use it.
unsigned long long enabled_register_states() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

struct Features {
    bool avx2 = false, avx512 = false;
};

Features detect() {
    Features f;
    if (cpuid(0, 0).a < 7) return f;
    const Registers l1 = cpuid(1, 0), l7 = cpuid(7, 0);
    const bool osxsave = l1.c & (1u << 27);
    if (!osxsave) return f;
    const unsigned long long xcr0 = enabled_register_states();
    const bool ymm = (xcr0 & 0x6) == 0x6;           // SSE and AVX state
    const bool zmm = ymm && (xcr0 & 0xe0) == 0xe0;  // opmask, upper ZMM, high ZMM
    const bool fma = l1.c & (1u << 12), avx = l1.c & (1u << 28), f16c = l1.c & (1u << 29);
    f.avx2 = ymm && avx && fma && f16c && (l7.b & (1u << 5));  // every AVX2 CPU has F16C (8-bit state's codes)
    const bool f512 = l7.b & (1u << 16), dq = l7.b & (1u << 17), bw = l7.b & (1u << 30),
               vl = l7.b & (1u << 31);
    f.avx512 = zmm && f.avx2 && f512 && dq && bw && vl;
    return f;
}
#endif

}  // namespace

const std::vector<Target>& built_targets() {
    static const std::vector<Target> targets = [] {
#if defined(FASTOPTIM_X86)
        const Features f = detect();
        return std::vector<Target>{
            {"sse2", &step_sse2, &norm_sse2, &scale_sse2, &probe_sse2, &matrix_sse2, &rows_sse2, &combine_sse2, true},
            {"avx2", &step_avx2, &norm_avx2, &scale_avx2, &probe_avx2, &matrix_avx2, &rows_avx2, &combine_avx2, f.avx2},
#if !defined(FASTOPTIM_NO_AVX512)  // CMake's FASTOPTIM_AVX512=OFF
            {"avx512", &step_avx512, &norm_avx512, &scale_avx512, &probe_avx512, &matrix_avx512, &rows_avx512, &combine_avx512, f.avx512},
#endif
        };
#else
        return std::vector<Target>{{"generic", &step_generic, &norm_generic, &scale_generic, &probe_generic, &matrix_generic, &rows_generic, &combine_generic, true}};
#endif
    }();
    return targets;
}

const Target& initial_target() {
    const auto& targets = built_targets();
    if (const char* forced = std::getenv("FASTOPTIM_ISA"); forced && *forced) {
        for (const Target& t : targets) {
            if (std::string(forced) != t.name) continue;
            if (!t.supported)
                throw std::runtime_error(std::string("FASTOPTIM_ISA=") + forced +
                                         ": this CPU does not support that instruction set");
            return t;
        }
        std::string names;
        for (const Target& t : targets) names += std::string(names.empty() ? "" : ", ") + t.name;
        throw std::runtime_error(std::string("FASTOPTIM_ISA=") + forced + ": unknown target; this build has " + names);
    }
    const Target* best = &targets.front();
    for (const Target& t : targets)
        if (t.supported) best = &t;
    return *best;
}

}  // namespace fastoptim
