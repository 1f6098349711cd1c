#include "plan.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <limits>

#include "fastoptim/bfloat16.hpp"
#include "fastoptim/int8_state.hpp"
#include "grad_check.hpp"
#include "fastoptim/runtime/settings.hpp"

namespace fastoptim {
namespace {

using npy = py::detail::npy_api;

const RuleInfo& rule_named(const std::string& name) {
    if (const RuleInfo* rule = find_rule(name)) return *rule;
    throw py::value_error("unknown rule '" + name + "'");
}

}  // namespace

template <class T>
void Plan::Arrays<T>::prepare_blocks(int norm_count) {
    norms = norm_count;
    for (const ArrayRef<T>& ref : refs) block_offsets.push_back(block_offsets.back() + (ref.size + kBlock - 1) / kBlock);
    grad_partials.assign(2 * std::size_t(block_offsets.back()), 0.0);
    if (norms == 0) return;
    partials.assign(std::size_t(block_offsets.back()) * std::size_t(norms), 0.0);
    ratios.assign(refs.size(), T(1));
    for (std::size_t k = 0; k < refs.size(); ++k) refs[k].ratio = &ratios[k];
}

template <class T>
void Plan::Arrays<T>::set_grad_mult(double mult) {
    if (mult == grad_mult) return;
    for (ArrayRef<T>& ref : refs) ref.grad_mult = T(mult);
    grad_mult = mult;
}

template <class T>
void Plan::Arrays<T>::take_active(const Arrays& all, const std::vector<char>& active) {
    refs.clear();
    offsets.assign(1, 0);
    group.clear();
    block_offsets.assign(1, 0);
    for (std::size_t k = 0; k < all.refs.size(); ++k) {
        if (!active[k]) continue;
        refs.push_back(all.refs[k]);
        offsets.push_back(offsets.back() + all.refs[k].size);
        group.push_back(all.group[k]);
    }
    grad_mult = all.grad_mult;
    prepare_blocks(all.norms);
}

template <class T>
GradBlocks<T> Plan::Arrays<T>::grad_blocks(double mult) {
    return GradBlocks<T>{refs.data(), index_t(refs.size()), block_offsets.data(), grad_partials.data(), T(mult)};
}

template <class T>
Work<T> Plan::Arrays<T>::work() {
    Work<T> w;
    w.arrays = refs.data();
    w.offsets = offsets.data();
    w.group = group.data();
    w.coeffs = coeffs.data();
    w.count = index_t(refs.size());
    if (!ratios.empty()) {
        w.block_offsets = block_offsets.data();
        w.partials = partials.data();
        w.ratios = ratios.data();
    }
    return w;
}

Plan::Plan(const std::string& rule, py::list params, py::list states, std::vector<int> groups,
           py::list names, int group_count, std::vector<std::string> slot_names, py::list extras,
           std::vector<std::string> state_dtypes, py::list absmax)
    : rule_(&rule_named(rule)), group_count_(group_count), slot_names_(std::move(slot_names)) {
    const std::size_t n = params.size();
    if (states.size() != n || groups.size() != n || names.size() != n || extras.size() != n)
        throw py::value_error("Plan: params, states, groups, names and extras differ in length");
    if (!state_dtypes.empty() && state_dtypes.size() != n)
        throw py::value_error("Plan: state_dtypes needs one entry per parameter");
    if (!absmax.empty() && absmax.size() != n) throw py::value_error("Plan: absmax needs one entry per parameter");
    if (group_count < 0) throw py::value_error("Plan: negative group count");
    if (slot_names_.size() != rule_->slots.size()) throw py::value_error("Plan: one slot name per state slot expected");
    for (std::size_t s = 0; s < slot_names_.size(); ++s)
        if (slot_names_[s] != rule_->slots[s].name) throw py::value_error("Plan: slot " + slot_names_[s] + " is not the rule's");
    struct Extent {
        const char *begin, *end;
        std::size_t param;
        int state;  // index into Param::states, -1 for the parameter, -2 - Extra for an extra
        bool operator<(const Extent& o) const { return begin < o.begin || (begin == o.begin && end < o.end); }
    };
    std::vector<Extent> extents;  // every array with elements
    for (std::size_t i = 0; i < n; ++i) {
        Param p;
        p.array = params[i];
        names_.push_back(names[i]);
        const std::string problem = array_problem(p.array.ptr(), ArrayNeeds{kParamTypes, nullptr, 0, true});
        if (!problem.empty()) refuse(label(i, "params"), problem);
        p.record = ArrayRecord(p.array.ptr());
        p.record.set_exact_bfloat16();
        if (groups[i] < 0 || groups[i] >= group_count) throw py::value_error("Plan: group index out of range");
        p.group = groups[i];
        py::list slots = states[i];
        if (slots.size() != rule_->slots.size()) throw py::value_error("Plan: wrong number of state slots");
        const bool is_double = p.record.is_double(), bf16_param = p.record.is_bfloat16();
        const std::string dtype = state_dtypes.empty() ? std::string() : state_dtypes[i];
        if (!dtype.empty() && dtype != "bfloat16" && dtype != "int8" && dtype != "float32")
            throw py::value_error("Plan: unknown state dtype '" + dtype + "'");
        const bool bf16 = dtype == "bfloat16", int8 = dtype == "int8";
        if ((bf16 || int8) && is_double)
            throw py::value_error(label(i, "params") + " is float64; " + dtype + " state is for float32 and bfloat16 "
                                  "parameters (it would lose what float64 keeps)");
        if (dtype == "float32" && is_double)
            throw py::value_error(label(i, "params") + " is float64; float32 state is for bfloat16 parameters");
        any_bfloat16_ = any_bfloat16_ || bf16;
        any_bfloat16_params_ = any_bfloat16_params_ || bf16_param;
        const ArrayNeeds state_needs{is_double ? npy::NPY_DOUBLE_ : npy::NPY_FLOAT_, &p.record.shape(), p.record.order(), true};
        ArrayNeeds slot_needs = state_needs;
        if (bf16) slot_needs.type_num = kBfloat16Bits;
        if (int8) slot_needs.type_num = kCodeBytes;
        const char* expected = bf16_param ? (bf16 ? "bfloat16 with bfloat16 state"
                                             : int8 ? "bfloat16 with 8-bit state (uint8 codes)"
                                                    : "bfloat16 with float32 state")
                               : bf16 ? "float32 with bfloat16 state"
                               : int8 ? "float32 with 8-bit state (uint8 codes)"
                                      : nullptr;
        const py::list scales = absmax.empty() || absmax[i].is_none() ? py::list() : py::list(absmax[i]);
        if (int8 != !scales.empty() || (int8 && scales.size() != rule_->slots.size()))
            throw py::value_error("Plan: 8-bit state needs one absmax entry per state slot, and only 8-bit state has them");
        std::vector<py::ssize_t> block_count{py::ssize_t(code_blocks(index_t(p.record.size())))};
        const ArrayNeeds absmax_needs{npy::NPY_FLOAT_, &block_count, 'C', true};
        for (int s = 0; s < int(rule_->slots.size()); ++s) {
            if (slots[s].is_none()) continue;
            py::object st = slots[s];
            const std::string state_problem = array_problem(st.ptr(), slot_needs, expected);
            if (!state_problem.empty())
                refuse(state_label(i, s), state_problem);
            p.states.push_back(st);
            p.state_records.emplace_back(st.ptr());
            p.state_slots.push_back(s);
            if (!int8) continue;
            py::object scale = scales[std::size_t(s)];
            const std::string scale_problem = array_problem(scale.ptr(), absmax_needs, "float32, one per block of 256");
            if (!scale_problem.empty()) refuse(state_label(i, kMaxStateSlots + s), scale_problem);
            p.states.push_back(scale);
            p.state_records.emplace_back(scale.ptr());
            p.state_slots.push_back(kMaxStateSlots + s);
        }
        py::list own = extras[i];
        if (own.size() != std::size_t(kExtras)) throw py::value_error("Plan: wrong number of extra arrays");
        for (int k = 0; k < kExtras; ++k) {
            p.extras[k] = own[std::size_t(k)];
            if (i == 0) has_extra_[k] = !p.extras[k].is_none();
            if (p.extras[k].is_none() != !has_extra_[k]) throw py::value_error("Plan: extras given for some parameters only");
            if (p.extras[k].is_none()) continue;
            const std::string extra_problem = array_problem(p.extras[k].ptr(), state_needs);
            if (!extra_problem.empty()) refuse(extra_label(params_.size(), k), extra_problem);
            p.extra_records[k] = ArrayRecord(p.extras[k].ptr());
        }
        auto fill = [&](auto& arrays, auto* zero) {
            using T = std::remove_pointer_t<decltype(zero)>;
            ArrayRef<T> ref;
            if (bf16_param) ref.param_bits = reinterpret_cast<std::uint16_t*>(p.record.data());
            else ref.param = reinterpret_cast<T*>(p.record.data());
            ref.param_stochastic = params_stochastic_;
            ref.size = index_t(p.record.size());
            for (std::size_t k = 0; k < p.states.size(); ++k) {
                const int slot = p.state_slots[k];
                if (slot < kMaxStateSlots) ref.state[slot] = p.state_records[k].data();
                else ref.absmax[slot - kMaxStateSlots] = reinterpret_cast<float*>(p.state_records[k].data());
            }
            if (bf16) ref.state_format = StateFormat::bf16_nearest;
            if (int8) ref.state_format = StateFormat::int8;
            p.index = arrays.refs.size();
            arrays.refs.push_back(ref);
            arrays.offsets.push_back(arrays.offsets.back() + ref.size);
            arrays.group.push_back(groups[i]);
        };
        if (is_double) fill(f64_, static_cast<double*>(nullptr));
        else fill(f32_, static_cast<float*>(nullptr));
        for (int k = -1; k < int(p.states.size()); ++k) {
            const ArrayRecord& r = k < 0 ? p.record : p.state_records[std::size_t(k)];
            if (r.nbytes()) extents.push_back(Extent{r.data(), r.data() + r.nbytes(), params_.size(), k});
        }
        for (int k = 0; k < kExtras; ++k) {
            const ArrayRecord& r = p.extra_records[k];
            if (has_extra_[k] && r.nbytes()) extents.push_back(Extent{r.data(), r.data() + r.nbytes(), params_.size(), -2 - k});
        }
        params_.push_back(std::move(p));
    }
    std::sort(extents.begin(), extents.end());
    auto extent_label = [&](const Extent& e) { return watched_label(Watched{nullptr, nullptr, e.param, e.state}); };
    for (std::size_t k = 1; k < extents.size(); ++k)
        if (extents[k].begin < extents[k - 1].end)
            throw py::value_error(extent_label(extents[k - 1]) + " and " + extent_label(extents[k]) +
                                  " share memory; every parameter and state array must own its elements");
    for (const Extent& e : extents) owned_.emplace_back(e.begin, e.end);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        Param& p = params_[i];
        watched_.push_back(Watched{p.array.ptr(), &p.record, i, -1});
        for (std::size_t k = 0; k < p.states.size(); ++k)
            watched_.push_back(Watched{p.states[k].ptr(), &p.state_records[k], i, int(k)});
        for (int k = 0; k < kExtras; ++k)
            if (has_extra_[k]) watched_.push_back(Watched{p.extras[k].ptr(), &p.extra_records[k], i, -2 - k});
    }
    for (Watched& w : watched_)  // no thread may resize them while the plan points at them
        if (pin_buffers(w.array, pins_)) w.record->set_pinned();
    // Checked in address order: after a sweep the headers are out of the caches and the TLB,
    // and neighbours in memory then share their misses.
    std::sort(watched_.begin(), watched_.end(), [](const Watched& a, const Watched& b) { return a.array < b.array; });
    grads_.reserve(params_.size());
    f32_.prepare_blocks(rule_->norms);
    f64_.prepare_blocks(rule_->norms);
    hyper_.assign(std::size_t(group_count) * rule_->fields.size(), 0.0);
    steps_done_.assign(n, 0);
    fresh_.assign(n, 1);
    active_.assign(n, 1);
    active_count_ = n;
    touched_.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) positions_.push_back(std::int64_t(i));
    for (std::size_t i = 0; i < n; ++i) scalars_.insert(scalars_.end(), rule_->scalar_init.begin(), rule_->scalar_init.end());
}

void Plan::set_hyper(int group, const std::vector<double>& row) {
    if (group < 0 || group >= group_count_) throw py::index_error("group index out of range");
    if (row.size() != rule_->fields.size()) throw py::value_error("hyper-parameter row of the wrong length");
    for (std::size_t k = 0; k < row.size(); ++k)  // the Python layer validated them; a race must not slip through
        if (!std::isfinite(row[k])) throw py::value_error(std::string(rule_->fields[k].name) + " must be finite");
    std::copy(row.begin(), row.end(), hyper_.begin() + std::ptrdiff_t(group * row.size()));
}

void Plan::set_rounding(bool stochastic, std::uint64_t seed, bool params_stochastic) {
    stochastic_ = stochastic;
    params_stochastic_ = params_stochastic;
    seed_ = seed;
    for (ArrayRef<float>& ref : f32_.refs) ref.param_stochastic = params_stochastic;
    const StateFormat format = stochastic ? StateFormat::bf16_stochastic : StateFormat::bf16_nearest;
    for (ArrayRef<float>& ref : f32_.refs)
        if (ref.state_format == StateFormat::bf16_nearest || ref.state_format == StateFormat::bf16_stochastic)
            ref.state_format = format;
}

void Plan::set_counters(const std::vector<std::int64_t>& positions, const std::vector<std::int64_t>& first_indices) {
    if (positions.size() != params_.size() || first_indices.size() != params_.size())
        throw py::value_error("set_counters: one position and one first index per parameter expected");
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (positions[i] < 0 || first_indices[i] < 0)
            throw py::value_error("set_counters: positions and first indices are non-negative");
        if (rule_->norms > 0 && first_indices[i] % kBlock != 0)  // a norm block then spans one key's stretch
            throw py::value_error("set_counters: a rule with norms takes pieces that start on a multiple of " +
                                  std::to_string(kBlock) + " elements");
        const bool coded = !params_[i].record.is_double() && ref_of<float>(i).state_format == StateFormat::int8;
        if (coded && first_indices[i] % kCodeBlock != 0)  // a shard holds whole blocks of codes
            throw py::value_error("set_counters: 8-bit state takes pieces that start on a multiple of " +
                                  std::to_string(kCodeBlock) + " elements");
    }
    positions_ = positions;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (params_[i].record.is_double()) ref_of<double>(i).first_index = first_indices[i];
        else ref_of<float>(i).first_index = first_indices[i];
    }
}

void Plan::set_round_keys() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (params_[i].record.is_double()) continue;
        ArrayRef<float>& ref = ref_of<float>(i);
        if (ref.state_format == StateFormat::bf16_stochastic || (ref.param_bits && ref.param_stochastic))
            ref.round_key = round_key(seed_, std::uint64_t(positions_[i]), std::uint64_t(steps_done_[i] + 1));
    }
}

void Plan::set_clock(int param, std::int64_t steps_done, bool fresh) {
    check_param(param);
    if (steps_done < 0 || steps_done > kMaxSteps)
        throw py::value_error("step must be an integer in [0, 2**53], got " + std::to_string(steps_done));
    steps_done_[std::size_t(param)] = steps_done;
    fresh_[std::size_t(param)] = fresh;
    units_stale_ = true;
}

void Plan::check_param(int param) const {
    if (param < 0 || std::size_t(param) >= params_.size()) throw py::index_error("parameter index out of range");
}

std::int64_t Plan::steps_done(int param) const {
    check_param(param);
    return steps_done_[std::size_t(param)];
}

bool Plan::fresh(int param) const {
    check_param(param);
    return fresh_[std::size_t(param)] != 0;
}

std::vector<double> Plan::scalars(int param) const {
    check_param(param);
    const std::size_t n = rule_->scalar_names.size(), i = std::size_t(param);
    return {scalars_.begin() + std::ptrdiff_t(i * n), scalars_.begin() + std::ptrdiff_t((i + 1) * n)};
}

void Plan::set_scalars(int param, const std::vector<double>& values) {
    check_param(param);
    const std::size_t n = rule_->scalar_names.size();
    if (values.size() != n) throw py::value_error("wrong number of running scalars");
    for (std::size_t k = 0; k < n; ++k)
        if (!(values[k] >= rule_->scalar_low[k] && values[k] <= rule_->scalar_high[k]))  // NaN fails too
            throw py::value_error(rule_->scalar_names[k] + " must be a finite number in [" +
                                  py::repr(py::float_(rule_->scalar_low[k])).cast<std::string>() + ", " +
                                  py::repr(py::float_(rule_->scalar_high[k])).cast<std::string>() + "], got " +
                                  py::repr(py::float_(values[k])).cast<std::string>());
    std::copy(values.begin(), values.end(), scalars_.begin() + std::ptrdiff_t(std::size_t(param) * n));
    units_stale_ = true;
}

std::string Plan::label(std::size_t i, const char* container) const {
    return std::string(container) + "[" + repr_text(names_[i]) + "]";
}

std::string Plan::state_label(std::size_t i, int slot) const {
    const std::string name = slot < kMaxStateSlots ? slot_names_[std::size_t(slot)]
                                                   : slot_names_[std::size_t(slot - kMaxStateSlots)] + "_absmax";
    return "state[" + repr_text(names_[i]) + "][" + repr_text(py::str(name)) + "]";
}

std::string Plan::extra_label(std::size_t i, int extra) const {
    return (extra == int(Extra::ema) ? "ema[" : "accumulated[") + repr_text(names_[i]) + "]";
}

std::string Plan::watched_label(const Watched& w) const {
    if (w.state == -1) return label(w.param, "params");
    if (w.state < -1) return extra_label(w.param, -2 - w.state);
    return state_label(w.param, params_[w.param].state_slots[std::size_t(w.state)]);
}

void Plan::check_arrays(bool buffers_only) const {
    for (const Watched& w : watched_) {
        if ((buffers_only && w.state != -2 - int(Extra::accumulated)) || w.record->matches(w.array)) continue;
        if (w.state == -1)
            throw py::value_error(label(w.param, "params") + " " + w.record->change(w.array) +
                                  " since the optimizer was given it; the arrays of an optimizer must keep their "
                                  "buffer, shape, dtype and layout (nothing was updated)");
        throw py::value_error(watched_label(w) + " " + w.record->change(w.array) +
                              " since the optimizer took it; state arrays must keep their buffer, shape, dtype and "
                              "layout (nothing was updated)");
    }
}

bool Plan::overlaps_owned_memory(const char* begin, const char* end) const {
    if (begin == end) return false;
    auto it = std::lower_bound(owned_.begin(), owned_.end(), std::make_pair(end, end));
    while (it != owned_.begin()) {  // ranges starting before `end`; owned ranges are disjoint
        --it;
        if (it->second > begin && it->first != it->second) return true;
        if (it->second <= begin) break;
    }
    return false;
}

const char* Plan::attach_grad(std::size_t i, PyObject* grad) {
    Param& p = params_[i];
    check_grad_beside(p.record, grad, names_[i]);
    const char* begin = py::detail::array_proxy(grad)->data;
    if (begin != p.clear_grad) {  // a training loop's gradients often land where the last ones were
        if (overlaps_owned_memory(begin, begin + p.record.nbytes()))
            throw py::value_error(label(i, "grads") + " shares memory with a parameter or an optimizer state array");
        p.clear_grad = begin;
    }
    if (p.record.is_double()) {
        f64_.refs[p.index].grad = reinterpret_cast<const double*>(begin);
    } else if (p.record.is_bfloat16()) {
        f32_.refs[p.index].grad_bits = reinterpret_cast<const std::uint16_t*>(begin);
        f32_.refs[p.index].grad = nullptr;
    } else {
        f32_.refs[p.index].grad = reinterpret_cast<const float*>(begin);
    }
    return begin;
}

void Plan::release_grads() {  // the gradient pointers left in the refs are never read outside a step
    grad_buffers_.release();
    grads_.clear();  // last: freeing a gradient may run Python code, which finds the plan busy
}

void Plan::check_clocks() const {
    for (std::size_t i = 0; i < params_.size(); ++i)
        if (steps_done_[i] >= kMaxSteps)
            throw py::value_error("the state of " + label(i, "params") + " has taken 2**53 steps, the most a step "
                                  "count holds exactly; nothing was updated");
}

bool Plan::same_clock(std::size_t a, std::size_t b) const {
    if (params_[a].group != params_[b].group) return false;
    if (rule_->clock == ClockScope::per_group) return true;  // the Python layer keeps a group's clocks equal
    const std::size_t n = rule_->scalar_names.size();
    return steps_done_[a] == steps_done_[b] && fresh_[a] == fresh_[b] &&
           std::equal(scalars_.begin() + std::ptrdiff_t(a * n), scalars_.begin() + std::ptrdiff_t((a + 1) * n),
                      scalars_.begin() + std::ptrdiff_t(b * n));
}

void Plan::form_units() {
    unit_first_.clear();
    unit_of_.assign(params_.size(), -1);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        for (std::size_t u = 0; u < unit_first_.size() && unit_of_[i] < 0; ++u)
            if (same_clock(unit_first_[u], i)) unit_of_[i] = int(u);
        if (unit_of_[i] < 0) {
            unit_of_[i] = int(unit_first_.size());
            unit_first_.push_back(i);
        }
        const Param& p = params_[i];
        (p.record.is_double() ? f64_.group : f32_.group)[p.index] = unit_of_[i];
    }
    const std::size_t units = unit_first_.size();
    f32_.coeffs.assign((units * rule_->coeffs_f32_size) / sizeof(double) + 1, 0.0);
    f64_.coeffs.assign((units * rule_->coeffs_f64_size) / sizeof(double) + 1, 0.0);
    scratch_scalars_.assign(units * rule_->scalar_names.size(), 0.0);
    units_stale_ = false;
}

void Plan::take_grads(py::handle grads, bool buffers_only) {
    order_grads(grads, names_, grads_);  // may run Python code
    for (const py::object& g : grads_)
        if (!g.is_none()) grad_buffers_.guard(g.ptr());  // may run the garbage collector
    // From here to the kernels no Python code runs: the checks below hold when they start.
    check_arrays(buffers_only);
    active_count_ = 0;
    grad_data_.assign(params_.size(), nullptr);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        active_[i] = !grads_[i].is_none();
        if (!active_[i]) continue;
        grad_data_[i] = attach_grad(i, grads_[i].ptr());
        ++active_count_;
    }
}

void Plan::check_grads(py::handle grads) {
    const Busy busy(busy_);
    const GradsHeld held(*this);
    if (!grads.is_none()) take_grads(grads);
}

StepOutcome Plan::step(py::handle grads, const GradOptions& options) {
    check_grad_mult(options.grad_mult, !f32_.refs.empty());
    if (std::isnan(options.max_norm)) throw py::value_error("max_norm must not be NaN");
    if (!rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' reads no gradients: use apply()");
    const Busy busy(busy_);
    check_clocks();
    const GradsHeld held(*this);
    Source source = Source::grads;
    if (grads.is_none()) {
        if (pending_ == 0)
            throw py::value_error("step() without gradients steps on the accumulated ones, and none were accumulated "
                                  "since the last step: call accumulate(grads) first, or pass grads (nothing was updated)");
        check_arrays();
        source = Source::buffers;
    } else {
        take_grads(grads);
        if (pending_ > 0) source = Source::grads_and_buffers;
    }
    if (source != Source::grads) {
        active_count_ = 0;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            active_[i] = char(active_[i] && source == Source::grads_and_buffers) | touched_[i];
            active_count_ += std::size_t(active_[i] != 0);
        }
    }
    StepOutcome outcome;
    run(options, source, outcome);
    return outcome;
}

void Plan::apply() {
    if (rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' needs gradients: use step(grads)");
    const Busy busy(busy_);
    check_clocks();
    check_arrays();
    std::fill(active_.begin(), active_.end(), char(1));
    active_count_ = params_.size();
    StepOutcome outcome;
    run(GradOptions{}, Source::grads, outcome);
}

namespace {

// torch's clip_grad_norm_: max_norm / (norm + 1e-6), clamped to 1 (a NaN passes, as torch's clamp
// lets it); 1 when not clipping.
double clip_coefficient(double max_norm, double norm) {
    if (!(max_norm >= 0) || std::isinf(max_norm)) return 1;
    const double c = max_norm / (norm + 1e-6);
    return c < 1 || std::isnan(c) ? c : 1;
}

}  // namespace

void Plan::run(const GradOptions& options, Source source, StepOutcome& outcome) {
    // Before anything changes, and after the last call that may run Python code (the pins of the
    // gradients in take_grads may): from here to the kernels' return, none runs.
    check_guards();
    fold_step();
    if ((any_bfloat16_ && stochastic_) || (any_bfloat16_params_ && params_stochastic_)) set_round_keys();
    const ThreadPolicy::Decision decision = threads_.decide();
    const bool measure = options.max_norm >= 0 || options.skip_nonfinite;
    bool in_sweep = source == Source::grads_and_buffers;  // the last micro-batch added by the update's own loads
    for (std::size_t i = 0; i < params_.size() && in_sweep && !measure; ++i)
        in_sweep = !active_[i] || !grads_[i].is_none();  // a parameter with only its buffer steps on the buffer
    in_sweep = in_sweep && !measure;
    const bool buffered = source != Source::grads;
    // Where each gradient comes from: the refs keep what the last step set, so only a change costs a loop.
    if (buffered || last_buffered_) {
        for (std::size_t i = 0; i < params_.size(); ++i) {
            auto set = [&](auto& ref) {
                using T = std::remove_reference_t<decltype(*ref.param)>;
                T* buffer = buffered ? reinterpret_cast<T*>(params_[i].extra_records[int(Extra::accumulated)].data()) : nullptr;
                ref.cleared = buffer;
                ref.accumulated = in_sweep ? buffer : nullptr;
                if (buffered && !in_sweep) {  // after the pre-pass below, the sum holds everything
                    ref.grad = buffer;
                    ref.grad_bits = nullptr;  // a bfloat16 parameter's sum is float32
                }
            };
            if (params_[i].record.is_double()) set(ref_of<double>(i));
            else set(ref_of<float>(i));
        }
        last_buffered_ = buffered;
    }
    const bool ema = ema_decay_ >= 0 && options.update_ema;
    const double ema_weight = ema ? next_ema_weight() : 0.0;
    for (std::size_t i = 0; i < params_.size() && ema_decay_ >= 0 && (ema != ema_on_); ++i) {
        char* at = ema ? params_[i].extra_records[int(Extra::ema)].data() : nullptr;
        if (params_[i].record.is_double()) ref_of<double>(i).ema = reinterpret_cast<double*>(at);
        else ref_of<float>(i).ema = reinterpret_cast<float*>(at);
    }
    ema_on_ = ema;
    if (ema) {
        if (ema_weight != ema_weight_set_) {
            for (ArrayRef<float>& ref : f32_.refs) ref.ema_weight = float(ema_weight);
            for (ArrayRef<double>& ref : f64_.refs) ref.ema_weight = ema_weight;
            ema_weight_set_ = ema_weight;
        }
    }
    const bool some = active_count_ < params_.size();
    Arrays<float>& a32 = some ? some32_ : f32_;
    Arrays<double>& a64 = some ? some64_ : f64_;
    const Target& target = current_target();
    double seconds;
    {
        std::optional<py::gil_scoped_release> unlocked;
        if (release_gil_) unlocked.emplace();
        const auto start = std::chrono::steady_clock::now();
        threads_.enter(decision);
        double mult = options.grad_mult;
        if (buffered && !in_sweep && source == Source::grads_and_buffers) {
            accumulate_now(options.grad_mult, decision.threads);  // the norm is the sum's: add the last batch first
            mult = 1;
        }
        auto select = [&]() {
            if (!some) return;
            std::vector<char> on32(f32_.refs.size(), 0), on64(f64_.refs.size(), 0);
            for (std::size_t i = 0; i < params_.size(); ++i)
                (params_[i].record.is_double() ? on64 : on32)[params_[i].index] = active_[i];
            some32_.take_active(f32_, on32);
            some64_.take_active(f64_, on64);
        };
        select();
        if (measure) {  // the read-only pass first: a skipped step writes nothing
            const NormRequest norm{NormOptions{NormKind::l2, options.skip_nonfinite}, a32.grad_blocks(mult),
                                   a64.grad_blocks(mult), decision.threads};
            const GradMeasure m = target.norm(norm);
            outcome.measured = true;
            outcome.grad_norm = std::sqrt(m.value);
            outcome.skipped = options.skip_nonfinite && !m.finite;
            mult *= clip_coefficient(options.max_norm, outcome.grad_norm);
        }
        PieceCounts counts;
        if (!outcome.skipped) {
            f32_.set_grad_mult(mult);
            f64_.set_grad_mult(mult);
            select();  // the refs the request points at, with the multiplier
            Work<float> w32 = a32.work();
            Work<double> w64 = a64.work();
            w32.coeffs = f32_.coeffs.data();
            w64.coeffs = f64_.coeffs.data();
            ++sweeps_begun_;
            counts = target.step(StepRequest{rule_->id, w32, w64, decision.threads, prefetch_above()});
            if (ema && some) lerp_left_out(ema_weight);
        } else if (buffered) {
            clear_buffers();  // a skipped step discards what was accumulated, and changes nothing else
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        threads_.leave(decision, counts, outcome.skipped ? 0.0 : seconds);  // a skip says nothing of sharing
    }
    if (outcome.skipped) return;
    if (buffered) {  // the sweep cleared the buffers it read; the others held nothing
        pending_ = 0;
        std::fill(touched_.begin(), touched_.end(), char(0));
    }
    if (ema) ++ema_updates_;
    record_step(seconds);
}

void Plan::fold_step() {
    if (units_stale_) form_units();
    const std::size_t fields = rule_->fields.size(), n_scalars = rule_->scalar_names.size();
    for (std::size_t u = 0; u < unit_first_.size(); ++u) {
        const std::size_t i = unit_first_[u];
        const double* row = hyper_.data() + std::size_t(params_[i].group) * fields;
        double* scalars = scratch_scalars_.data() + u * n_scalars;  // advanced here, kept once the step has run
        std::copy(scalars_.begin() + std::ptrdiff_t(i * n_scalars), scalars_.begin() + std::ptrdiff_t((i + 1) * n_scalars),
                  scalars);
        const Clock clock{steps_done_[i] + 1, fresh_[i] != 0, scalars};
        rule_->advance(row, clock, scalars);
        rule_->fold(row, clock, reinterpret_cast<char*>(f32_.coeffs.data()) + u * rule_->coeffs_f32_size,
                    reinterpret_cast<char*>(f64_.coeffs.data()) + u * rule_->coeffs_f64_size);
    }
}

void Plan::record_step(double seconds) {
    last_seconds_ = seconds;
    const std::size_t n_scalars = rule_->scalar_names.size();
    units_stale_ = units_stale_ || active_count_ < params_.size();  // the left-out parameters' clocks stay
    for (std::size_t i = 0; i < params_.size(); ++i) {  // each unit advanced alike: units stay as they are
        if (!active_[i]) continue;
        ++steps_done_[i];
        fresh_[i] = 0;
        const double* advanced = scratch_scalars_.data() + std::size_t(unit_of_[i]) * n_scalars;
        std::copy(advanced, advanced + n_scalars, scalars_.begin() + std::ptrdiff_t(i * n_scalars));
    }
}

}  // namespace fastoptim
