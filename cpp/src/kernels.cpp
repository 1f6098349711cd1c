// Every rule's step for one instruction-set target. CMake compiles this file once per target,
// defining FASTOPTIM_TARGET_NS (sse2, avx2, avx512, generic) and that target's flags; the
// namespace keeps each target's instantiations apart at link time.
#include "fastoptim/fastoptim.hpp"
#include "targets.hpp"

#define FASTOPTIM_CONCAT_(a, b) a##_##b
#define FASTOPTIM_CONCAT(a, b) FASTOPTIM_CONCAT_(a, b)

namespace fastoptim {

void FASTOPTIM_CONCAT(step, FASTOPTIM_TARGET_NS)(const StepRequest& request) {
    switch (request.rule) {
#define FASTOPTIM_RULE_CASE(Rule)                                           \
    case RuleId::Rule:                                                      \
        step_all<Rule>(request.f32, request.f64, request.threads);          \
        return;
        FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_CASE)
#undef FASTOPTIM_RULE_CASE
    }
}

}  // namespace fastoptim
