// Runtime dispatch for C++ (link fastoptim::runtime): the kernels compiled once per
// instruction-set target (sse2, avx2, avx512 on x86-64), the CPU detection that picks the widest
// this CPU runs, and the settings the Python package uses. A program built for the x86-64
// baseline runs the AVX-512 kernels where the CPU has them, with the same bits on every target.
//
//   fastoptim::step_all_dispatched<fastoptim::Adam>(f32, f64, threads);  // as step_all, dispatched
//   fastoptim::current_target().name;  // "avx512"; FASTOPTIM_ISA=sse2 or set_target("sse2") chooses
//
// The header-only kernels (fastoptim.hpp) stay available beside it, compiled for your own flags.
#pragma once

#include "fastoptim/rules.hpp"
#include "fastoptim/runtime/cache.hpp"
#include "fastoptim/runtime/cpu.hpp"
#include "fastoptim/runtime/rule_table.hpp"
#include "fastoptim/runtime/settings.hpp"

namespace fastoptim {

// The dispatch table's identifier of each rule type (RuleId::Adam for fastoptim::Adam).
template <class Rule>
struct RuleIdOf;
#define FASTOPTIM_RULE_ID_OF(Rule) \
    template <>                    \
    struct RuleIdOf<Rule> {        \
        static constexpr RuleId value = RuleId::Rule; \
    };
FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_ID_OF)
#undef FASTOPTIM_RULE_ID_OF

// One step of Rule over the float32 and float64 arrays together, as step_all (parallel.hpp), on
// the current target's kernels, prefetching above prefetch_above() bytes. Returns how the update
// pass was shared.
template <class Rule>
PieceCounts step_all_dispatched(const Work<float>& f32, const Work<double>& f64, int threads) {
    return current_target().step(StepRequest{RuleIdOf<Rule>::value, f32, f64, threads, prefetch_above()});
}

}  // namespace fastoptim
