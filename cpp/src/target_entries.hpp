// The entry points each instruction-set target's kernels.cpp defines (compiled once per target,
// with its flags), which cpu.cpp gathers into the dispatch table. FASTOPTIM_X86 is CMake's.
#pragma once

#include "fastoptim/runtime/targets.hpp"

namespace fastoptim {

#define FASTOPTIM_DECLARE_TARGET(name)       \
    PieceCounts step_##name(const StepRequest&); \
    GradMeasure norm_##name(const NormRequest&);  \
    void scale_##name(const ScaleRequest&);       \
    bool probe_##name(const ProbeRequest&);       \
    PassSums matrix_##name(const MatrixRequest&);  \
    PieceCounts rows_##name(const RowsRequest&);        \
    CombineSums combine_##name(const CombineRequest&);
FASTOPTIM_DECLARE_TARGET(generic)
#if defined(FASTOPTIM_X86)
FASTOPTIM_DECLARE_TARGET(sse2)
FASTOPTIM_DECLARE_TARGET(avx2)
FASTOPTIM_DECLARE_TARGET(avx512)
#endif
#undef FASTOPTIM_DECLARE_TARGET

}  // namespace fastoptim
