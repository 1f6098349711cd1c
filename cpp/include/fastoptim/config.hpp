// Build-wide switches for the header-only kernels.
//
// Every kernel header wraps its contents in FASTOPTIM_TARGET_BEGIN/END: an inline namespace
// named after the instruction set the including file is compiled for. The runtime library
// (fastoptim::runtime, which the Python extension links) compiles the same headers once per
// target (sse2, avx2, avx512) and its other files in `common`; without a namespace per target
// the linker could merge an AVX-512 instantiation of an inline helper into the baseline path and
// an older CPU would die with SIGILL. A user's files compile in `native`, apart from all of
// them, and never name the namespace. The types that cross between them (ArrayRef, Work, the
// requests of runtime/targets.hpp) are declared before the namespace opens.
#pragma once

#include <cstdint>

#ifndef FASTOPTIM_TARGET_NS
#define FASTOPTIM_TARGET_NS native
#endif

#define FASTOPTIM_TARGET_BEGIN inline namespace FASTOPTIM_TARGET_NS {
#define FASTOPTIM_TARGET_END }

#if defined(_MSC_VER)
#define FASTOPTIM_INLINE __forceinline
#define FASTOPTIM_LAMBDA_INLINE
#else
#define FASTOPTIM_INLINE inline __attribute__((always_inline))
#define FASTOPTIM_LAMBDA_INLINE __attribute__((always_inline))  // after a lambda's parameter list
#endif

namespace fastoptim {
using index_t = std::int64_t;  // 64-bit everywhere: arrays past 2^31 elements are real
}  // namespace fastoptim
