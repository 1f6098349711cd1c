// What the Python layer needs to know of each rule, gathered from the rule headers.
#pragma once

#include <string>
#include <vector>

#include "targets.hpp"

namespace fastoptim {

using FoldFunction = void (*)(const double* row, const Clock& clock, void* coeffs_f32, void* coeffs_f64);
using AdvanceFunction = void (*)(const double* row, const Clock& clock, double* scalars);

struct RuleInfo {
    RuleId id;
    std::string name;
    std::vector<std::string> fields;  // the hyper-parameter row, in order
    int slots;                        // state arrays per parameter
    std::vector<std::string> scalar_names;
    std::vector<double> scalar_init;
    std::vector<double> scalar_low, scalar_high;  // the range of each running scalar
    int norms;
    bool needs_grad;
    std::size_t coeffs_f32_size, coeffs_f64_size;
    FoldFunction fold;
    AdvanceFunction advance;
};

// Every rule, in RuleId order. Defined in rule_table.cpp, the one file of the extension's
// common part that includes every rule's header.
const std::vector<RuleInfo>& rule_table();

}  // namespace fastoptim
