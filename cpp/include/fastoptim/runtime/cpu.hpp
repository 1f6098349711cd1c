// Which instruction-set targets this build has, which the CPU runs, and the one in use.
#pragma once

#include <string>
#include <vector>

#include "fastoptim/runtime/targets.hpp"

namespace fastoptim {

struct Target {
    const char* name;
    StepFunction step;
    NormFunction norm;
    ScaleFunction scale;
    ProbeFunction probe;
    MatrixFunction matrix;
    RowsFunction rows;
    CombineFunction combine;
    bool supported;  // the CPU and the operating system can run it
};

// Every target built into the runtime library, from the baseline to the widest.
const std::vector<Target>& built_targets();

// The widest supported target, or FASTOPTIM_ISA's choice (std::runtime_error if unsupported).
const Target& initial_target();

}  // namespace fastoptim
