#include "fastoptim/runtime/rule_table.hpp"

#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "fastoptim/rules.hpp"

namespace fastoptim {
namespace {

template <class Rule>
void fold_row(const double* row, const Clock& clock, void* coeffs_f32, void* coeffs_f64) {
    typename Rule::Hyper hyper;
    static_assert(std::is_trivially_copyable_v<typename Rule::Hyper>, "Hyper is plain doubles, copied from a row");
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
    static_assert(schema_matches<typename Rule::Hyper>(Rule::fields),
                  "a rule's fields list Hyper's members in order, once each, with defaults in range");
    static_assert(slots_match(Rule::fields, Rule::slots), "a slot's needed_when names one of the rule's fields");
    return RuleInfo{id,
                    Rule::name,
                    {Rule::fields.begin(), Rule::fields.end()},
                    {Rule::slots.begin(), Rule::slots.end()},
                    {Rule::scalar_names, Rule::scalar_names + Rule::scalars},
                    {Rule::scalar_init, Rule::scalar_init + Rule::scalars},
                    {Rule::scalar_low, Rule::scalar_low + Rule::scalars},
                    {Rule::scalar_high, Rule::scalar_high + Rule::scalars},
                    Rule::clock,
                    Rule::norms,
                    Rule::measured_slots,
                    Rule::measure_reads_state,
                    Rule::update_reads_grad,
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

const RuleInfo* find_rule(const std::string& name) {
    for (const RuleInfo& r : rule_table())
        if (r.name == name) return &r;
    return nullptr;
}

std::vector<double> hyper_row(const RuleInfo& rule, const std::vector<std::pair<std::string, double>>& values) {
    std::vector<double> row;
    for (const Field& f : rule.fields) row.push_back(f.default_value);
    for (const auto& [name, value] : values) {
        std::size_t k = 0;
        while (k < rule.fields.size() && name != rule.fields[k].name) ++k;
        if (k == rule.fields.size()) throw std::invalid_argument(rule.name + " has no hyper-parameter " + name);
        row[k] = value;
    }
    return row;
}

std::vector<bool> slots_used(const RuleInfo& rule, const std::vector<double>& row) {
    std::vector<bool> used;
    for (const Slot& s : rule.slots) {
        bool needed = s.needed_when == nullptr;
        for (std::size_t k = 0; !needed && k < rule.fields.size(); ++k)
            needed = std::string(rule.fields[k].name) == s.needed_when && row[k] != 0.0;
        used.push_back(needed);
    }
    return used;
}

std::vector<Pass> step_passes(const RuleInfo& rule, int slots_used) {
    std::vector<Pass> passes;
    const int grad = rule.needs_grad ? 1 : 0;
    if (rule.norms > 0)
        passes.push_back({1 + grad + rule.measured_slots + (rule.measure_reads_state ? slots_used : 0),
                          rule.measured_slots});
    const int update_grad = rule.norms > 0 && !rule.update_reads_grad ? 0 : grad;
    passes.push_back({1 + update_grad + slots_used, 1 + slots_used - (rule.norms > 0 ? rule.measured_slots : 0)});
    return passes;
}

}  // namespace fastoptim
