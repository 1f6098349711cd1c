#include "rule_table.hpp"

#include <cstring>

#include "fastoptim/rules.hpp"

namespace fastoptim {
namespace {

template <class Rule>
void fold_row(const double* row, const Clock& clock, void* coeffs_f32, void* coeffs_f64) {
    typename Rule::Hyper hyper;
    static_assert(sizeof(hyper) == Rule::fields.size() * sizeof(double), "Hyper must be the fields, as doubles");
    std::memcpy(&hyper, row, sizeof(hyper));
    *static_cast<typename Rule::template Coeffs<float>*>(coeffs_f32) = Rule::template fold<float>(hyper, clock);
    *static_cast<typename Rule::template Coeffs<double>*>(coeffs_f64) = Rule::template fold<double>(hyper, clock);
}

template <class Rule>
void advance_row(const double* row, const Clock& clock, double* scalars) {
    typename Rule::Hyper hyper;
    std::memcpy(&hyper, row, sizeof(hyper));
    Rule::advance(hyper, clock, scalars);
}

template <class Rule>
RuleInfo info_of(RuleId id) {
    return RuleInfo{id,
                    Rule::name,
                    {Rule::fields.begin(), Rule::fields.end()},
                    Rule::slots,
                    {Rule::scalar_names, Rule::scalar_names + Rule::scalars},
                    {Rule::scalar_init, Rule::scalar_init + Rule::scalars},
                    {Rule::scalar_low, Rule::scalar_low + Rule::scalars},
                    {Rule::scalar_high, Rule::scalar_high + Rule::scalars},
                    Rule::norms,
                    Rule::needs_grad,
                    sizeof(typename Rule::template Coeffs<float>),
                    sizeof(typename Rule::template Coeffs<double>),
                    &fold_row<Rule>,
                    &advance_row<Rule>};
}

}  // namespace

const std::vector<RuleInfo>& rule_table() {
    static const std::vector<RuleInfo> table = {
#define FASTOPTIM_RULE_INFO(Rule) info_of<Rule>(RuleId::Rule),
        FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_INFO)
#undef FASTOPTIM_RULE_INFO
    };
    return table;
}

}  // namespace fastoptim
