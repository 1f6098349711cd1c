#include "plan.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "grad_check.hpp"
#include "runtime.hpp"

namespace fastoptim {
namespace {

using npy = py::detail::npy_api;

const RuleInfo& rule_named(const std::string& name) {
    if (const RuleInfo* rule = find_rule(name)) return *rule;
    throw py::value_error("unknown rule '" + name + "'");
}

}  // namespace

// Set while a step runs: the plan's scratch (gradient pointers, scalars) belongs to that step.
class Plan::Busy {
public:
    explicit Busy(bool& flag) : flag_(flag) {
        if (flag_) throw std::runtime_error("this optimizer's plan is already stepping (from another thread, or from "
                                            "Python code the step called); steps of one plan run one at a time");
        flag_ = true;
    }
    ~Busy() { flag_ = false; }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

private:
    bool& flag_;
};

template <class T>
void Plan::Arrays<T>::prepare_blocks(int norms) {
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
           py::list names, int group_count, std::vector<std::string> slot_names)
    : rule_(&rule_named(rule)), group_count_(group_count), slot_names_(std::move(slot_names)) {
    const std::size_t n = params.size();
    if (states.size() != n || groups.size() != n || names.size() != n)
        throw py::value_error("Plan: params, states, groups and names differ in length");
    if (group_count < 0) throw py::value_error("Plan: negative group count");
    if (slot_names_.size() != rule_->slots.size()) throw py::value_error("Plan: one slot name per state slot expected");
    for (std::size_t s = 0; s < slot_names_.size(); ++s)
        if (slot_names_[s] != rule_->slots[s].name) throw py::value_error("Plan: slot " + slot_names_[s] + " is not the rule's");
    struct Extent {
        const char *begin, *end;
        std::size_t param;
        int state;  // index into Param::states, -1 for the parameter
        bool operator<(const Extent& o) const { return begin < o.begin || (begin == o.begin && end < o.end); }
    };
    std::vector<Extent> extents;  // every array with elements
    for (std::size_t i = 0; i < n; ++i) {
        Param p;
        p.array = params[i];
        names_.push_back(names[i]);
        const std::string problem = array_problem(p.array.ptr(), ArrayNeeds{-1, nullptr, 0, true});
        if (!problem.empty()) refuse(label(i, "params"), problem);
        p.record = ArrayRecord(p.array.ptr());
        if (groups[i] < 0 || groups[i] >= group_count) throw py::value_error("Plan: group index out of range");
        p.group = groups[i];
        py::list slots = states[i];
        if (slots.size() != rule_->slots.size()) throw py::value_error("Plan: wrong number of state slots");
        const bool is_double = p.record.is_double();
        const ArrayNeeds state_needs{is_double ? npy::NPY_DOUBLE_ : npy::NPY_FLOAT_, &p.record.shape(), p.record.order(), true};
        for (int s = 0; s < int(rule_->slots.size()); ++s) {
            if (slots[s].is_none()) continue;
            py::object st = slots[s];
            const std::string state_problem = array_problem(st.ptr(), state_needs);
            if (!state_problem.empty())
                refuse(state_label(i, s), state_problem);
            p.states.push_back(st);
            p.state_records.emplace_back(st.ptr());
            p.state_slots.push_back(s);
        }
        auto fill = [&](auto& arrays, auto* zero) {
            using T = std::remove_pointer_t<decltype(zero)>;
            ArrayRef<T> ref;
            ref.param = reinterpret_cast<T*>(p.record.data());
            ref.size = index_t(p.record.nbytes() / sizeof(T));
            for (std::size_t k = 0; k < p.states.size(); ++k)
                ref.state[p.state_slots[k]] = reinterpret_cast<T*>(p.state_records[k].data());
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
        params_.push_back(std::move(p));
    }
    std::sort(extents.begin(), extents.end());
    auto extent_label = [&](const Extent& e) {
        return e.state < 0 ? label(e.param, "params")
                           : state_label(e.param, params_[e.param].state_slots[std::size_t(e.state)]);
    };
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
    for (std::size_t i = 0; i < n; ++i) scalars_.insert(scalars_.end(), rule_->scalar_init.begin(), rule_->scalar_init.end());
}

void Plan::set_hyper(int group, const std::vector<double>& row) {
    if (group < 0 || group >= group_count_) throw py::index_error("group index out of range");
    if (row.size() != rule_->fields.size()) throw py::value_error("hyper-parameter row of the wrong length");
    for (std::size_t k = 0; k < row.size(); ++k)  // the Python layer validated them; a race must not slip through
        if (!std::isfinite(row[k])) throw py::value_error(std::string(rule_->fields[k].name) + " must be finite");
    std::copy(row.begin(), row.end(), hyper_.begin() + std::ptrdiff_t(group * row.size()));
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
    return "state[" + repr_text(names_[i]) + "][" + repr_text(py::str(slot_names_[std::size_t(slot)])) + "]";
}

void Plan::check_arrays() const {
    for (const Watched& w : watched_) {
        if (w.record->matches(w.array)) continue;
        const Param& p = params_[w.param];
        if (w.state < 0)
            throw py::value_error(label(w.param, "params") + " " + p.record.change(w.array) +
                                  " since the optimizer was given it; the arrays of an optimizer must keep their "
                                  "buffer, shape, dtype and layout (nothing was updated)");
        throw py::value_error(state_label(w.param, p.state_slots[std::size_t(w.state)]) + " " + w.record->change(w.array) +
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

void Plan::attach_grad(std::size_t i, PyObject* grad) {
    Param& p = params_[i];
    check_grad_beside(p.record, grad, names_[i]);
    const char* begin = py::detail::array_proxy(grad)->data;
    if (begin != p.clear_grad) {  // a training loop's gradients often land where the last ones were
        if (overlaps_owned_memory(begin, begin + p.record.nbytes()))
            throw py::value_error(label(i, "grads") + " shares memory with a parameter or an optimizer state array");
        p.clear_grad = begin;
    }
    if (p.record.is_double()) f64_.refs[p.index].grad = reinterpret_cast<const double*>(begin);
    else f32_.refs[p.index].grad = reinterpret_cast<const float*>(begin);
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

StepOutcome Plan::step(py::handle grads, const GradOptions& options) {
    // Any grad_mult float32 holds is memory-safe (a clip of a non-finite norm gives 0 or NaN, as
    // torch's does); the Python layer checks the user's grad_scale. A finite double beyond
    // float's range would convert with undefined behaviour.
    if (!f32_.refs.empty() && std::isfinite(options.grad_mult) &&
        std::fabs(options.grad_mult) > double(std::numeric_limits<float>::max()))
        throw py::value_error("grad_mult is beyond float32's range");
    if (std::isnan(options.max_norm)) throw py::value_error("max_norm must not be NaN");
    if (!rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' reads no gradients: use apply()");
    const Busy busy(busy_);
    check_clocks();
    struct Release {
        Plan& plan;
        ~Release() { plan.release_grads(); }
    } release{*this};
    order_grads(grads, names_, grads_);  // may run Python code
    for (const py::object& g : grads_) grad_buffers_.guard(g.ptr());  // may run the garbage collector
    // From here to the kernels no Python code runs: the checks below hold when they start.
    check_arrays();
    for (std::size_t i = 0; i < params_.size(); ++i) attach_grad(i, grads_[i].ptr());
    StepOutcome outcome;
    run(options, outcome);
    return outcome;
}

void Plan::apply() {
    if (rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' needs gradients: use step(grads)");
    const Busy busy(busy_);
    check_clocks();
    check_arrays();
    StepOutcome outcome;
    run(GradOptions{}, outcome);
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

void Plan::run(const GradOptions& options, StepOutcome& outcome) {
    fold_step();
    const ThreadPolicy::Decision decision = threads_.decide();
    const bool measure = options.max_norm >= 0 || options.skip_nonfinite;
    const StepRequest request{rule_->id, f32_.work(), f64_.work(), decision.threads, prefetch_above()};
    const Target& target = current_target();
    double seconds;
    {
        py::gil_scoped_release unlocked;
        const auto start = std::chrono::steady_clock::now();
        threads_.enter(decision);
        double mult = options.grad_mult;
        if (measure) {  // the read-only pass first: a skipped step writes nothing
            const NormRequest norm{NormOptions{NormKind::l2, options.skip_nonfinite},
                                   f32_.grad_blocks(options.grad_mult), f64_.grad_blocks(options.grad_mult),
                                   decision.threads};
            const GradMeasure m = target.norm(norm);
            outcome.measured = true;
            outcome.grad_norm = std::sqrt(m.value);
            outcome.skipped = options.skip_nonfinite && !m.finite;
            mult *= clip_coefficient(options.max_norm, outcome.grad_norm);
        }
        PieceCounts counts;
        if (!outcome.skipped) {
            f32_.set_grad_mult(mult);  // the refs the request points at
            f64_.set_grad_mult(mult);
            counts = target.step(request);
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        threads_.leave(decision, counts, outcome.skipped ? 0.0 : seconds);  // a skip says nothing of sharing
    }
    if (!outcome.skipped) record_step(seconds);
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
    for (std::size_t i = 0; i < params_.size(); ++i) {  // each unit advanced alike: units stay as they are
        ++steps_done_[i];
        fresh_[i] = 0;
        const double* advanced = scratch_scalars_.data() + std::size_t(unit_of_[i]) * n_scalars;
        std::copy(advanced, advanced + n_scalars, scalars_.begin() + std::ptrdiff_t(i * n_scalars));
    }
}

}  // namespace fastoptim
