// Each rule's step on the target a file is compiled for. Declared for the dispatcher
// (kernels.cpp), defined in the family file that includes the rule's header
// (kernels/<family>.cpp): editing one rule recompiles its family, not every rule.
#pragma once

#include "fastoptim/runtime/targets.hpp"

#define FASTOPTIM_RULE_STEP_(target, Rule) step_##target##_##Rule
#define FASTOPTIM_RULE_STEP_AT(target, Rule) FASTOPTIM_RULE_STEP_(target, Rule)
#define FASTOPTIM_RULE_STEP(Rule) FASTOPTIM_RULE_STEP_AT(FASTOPTIM_TARGET_NS, Rule)

#define FASTOPTIM_DECLARE_RULE_STEP(Rule) PieceCounts FASTOPTIM_RULE_STEP(Rule)(const StepRequest& request);
#define FASTOPTIM_DEFINE_RULE_STEP(Rule)                                                     \
    PieceCounts FASTOPTIM_RULE_STEP(Rule)(const StepRequest& request) {                      \
        return step_all<Rule>(request.f32, request.f64, request.threads, request.prefetch_above); \
    }

namespace fastoptim {
FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_DECLARE_RULE_STEP)
}  // namespace fastoptim
