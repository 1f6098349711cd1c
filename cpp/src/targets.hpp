// The entry point every instruction-set target exports, and the list of targets built.
#pragma once

#include "fastoptim/parallel.hpp"
#include "fastoptim/rules.hpp"

namespace fastoptim {

// Rule identifiers, in the order of FASTOPTIM_FOR_EACH_RULE.
enum class RuleId : int {
#define FASTOPTIM_RULE_ID(Rule) Rule,
    FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_ID)
#undef FASTOPTIM_RULE_ID
};

struct StepRequest {
    RuleId rule;
    Work<float> f32;
    Work<double> f64;
    int threads;
};

using StepFunction = void (*)(const StepRequest&);

// Defined by cpp/src/kernels.cpp, compiled once per target with its own flags.
void step_generic(const StepRequest&);
#if defined(FASTOPTIM_X86)
void step_sse2(const StepRequest&);
void step_avx2(const StepRequest&);
void step_avx512(const StepRequest&);
#endif

}  // namespace fastoptim
