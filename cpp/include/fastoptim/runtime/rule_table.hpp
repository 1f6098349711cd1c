// What the Python layer needs to know of each rule, gathered from the rule headers.
#pragma once

#include <string>
#include <vector>

#include "fastoptim/runtime/targets.hpp"

namespace fastoptim {

using FoldFunction = void (*)(const double* row, const Clock& clock, void* coeffs_f32, void* coeffs_f64);
using AdvanceFunction = void (*)(const double* row, const Clock& clock, double* scalars);

struct RuleInfo {
    RuleId id;
    std::string name;
    std::vector<Field> fields;        // the hyper-parameter row, in order (schema.hpp)
    std::vector<Slot> slots;          // state arrays per parameter
    std::vector<std::string> scalar_names;
    std::vector<double> scalar_init;
    std::vector<double> scalar_low, scalar_high;  // the range of each running scalar
    ClockScope clock;
    int norms;
    int measured_slots;               // state slots the norm pass reads and writes
    bool measure_reads_state;         // the norm pass reads every slot in use, writing none
    bool update_reads_grad;
    bool needs_grad;
    std::size_t coeffs_f32_size, coeffs_f64_size;
    FoldFunction fold;
    AdvanceFunction advance;
};

// The arrays one sweep of a step reads and writes, per element.
struct Pass {
    int reads, writes;
};

// Every rule, in RuleId order. Defined in rule_table.cpp, the one file of the runtime library's
// common part that includes every rule's header.
const std::vector<RuleInfo>& rule_table();

const RuleInfo* find_rule(const std::string& name);  // null when there is none

// The row of `rule`'s defaults with the named fields set; throws std::invalid_argument naming
// an unknown field.
std::vector<double> hyper_row(const RuleInfo& rule, const std::vector<std::pair<std::string, double>>& values);

// Which state slots a group with this row uses: those whose needed_when field is nonzero.
std::vector<bool> slots_used(const RuleInfo& rule, const std::vector<double>& row);

// The sweeps of one step over parameters using `slots_used` state slots, and what each moves:
// the bytes a step must move, for the benchmarks and their bandwidth probe. A rule with norms
// first sweeps p, g and the slots its norm pass advances; the update sweep then reads p, g
// (unless the norm pass consumed it) and every slot, and writes p and the slots not yet written.
std::vector<Pass> step_passes(const RuleInfo& rule, int slots_used);

}  // namespace fastoptim
