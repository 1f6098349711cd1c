#include "plan.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime.hpp"
#include "thread_placement.hpp"

namespace fastoptim {
namespace {

using npy = py::detail::npy_api;

bool native_byte_order(char order) {
    const std::uint16_t probe = 1;
    const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    return order == '=' || order == '|' || order == (little ? '<' : '>');
}

std::string shape_text(const py::ssize_t* dims, int ndim) {
    std::string s = "(";
    for (int k = 0; k < ndim; ++k) s += std::to_string(dims[k]) + (ndim == 1 ? "," : k + 1 < ndim ? ", " : "");
    return s + ")";
}

const RuleInfo& find_rule(const std::string& name) {
    for (const RuleInfo& r : rule_table())
        if (r.name == name) return r;
    throw py::value_error("unknown rule '" + name + "'");
}

}  // namespace

template <class T>
void Plan::Arrays<T>::prepare_norms(int norms) {
    for (const ArrayRef<T>& ref : refs) block_offsets.push_back(block_offsets.back() + (ref.size + kBlock - 1) / kBlock);
    partials.assign(std::size_t(block_offsets.back()) * std::size_t(norms), 0.0);
    ratios.assign(refs.size(), T(1));
    for (std::size_t k = 0; k < refs.size(); ++k) refs[k].ratio = &ratios[k];
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
           py::list names, int group_count)
    : rule_(&find_rule(rule)), group_count_(group_count) {
    const std::size_t n = params.size();
    if (states.size() != n || groups.size() != n || names.size() != n)
        throw py::value_error("Plan: params, states, groups and names differ in length");
    if (group_count < 0) throw py::value_error("Plan: negative group count");
    for (std::size_t i = 0; i < n; ++i) {
        py::array a = py::reinterpret_borrow<py::array>(params[i]);
        const auto* proxy = py::detail::array_proxy(a.ptr());
        Param p;
        p.array = a;
        p.name = names[i];
        p.is_double = a.dtype().num() == npy::NPY_DOUBLE_;
        p.shape.assign(a.shape(), a.shape() + a.ndim());
        p.c_contiguous = proxy->flags & npy::NPY_ARRAY_C_CONTIGUOUS_;
        p.f_contiguous = proxy->flags & npy::NPY_ARRAY_F_CONTIGUOUS_;
        if (groups[i] < 0 || groups[i] >= group_count) throw py::value_error("Plan: group index out of range");
        py::list slots = states[i];
        if (int(slots.size()) != rule_->slots) throw py::value_error("Plan: wrong number of state slots");

        auto fill = [&](auto& arrays, auto* zero) {
            using T = std::remove_pointer_t<decltype(zero)>;
            ArrayRef<T> ref;
            ref.param = static_cast<T*>(a.mutable_data());
            ref.size = index_t(a.size());
            for (int s = 0; s < rule_->slots; ++s) {
                if (slots[s].is_none()) continue;
                py::array st = py::reinterpret_borrow<py::array>(slots[s]);
                ref.state[s] = static_cast<T*>(st.mutable_data());
                p.states.push_back(st);
                owned_.emplace_back(static_cast<const char*>(st.data()),
                                    static_cast<const char*>(st.data()) + st.nbytes());
            }
            p.index = arrays.refs.size();
            arrays.refs.push_back(ref);
            arrays.offsets.push_back(arrays.offsets.back() + ref.size);
            arrays.group.push_back(groups[i]);
        };
        if (p.is_double) fill(f64_, static_cast<double*>(nullptr));
        else fill(f32_, static_cast<float*>(nullptr));
        owned_.emplace_back(static_cast<const char*>(a.data()), static_cast<const char*>(a.data()) + a.nbytes());
        params_.push_back(std::move(p));
    }
    std::sort(owned_.begin(), owned_.end());
    if (rule_->norms > 0) {
        f32_.prepare_norms(rule_->norms);
        f64_.prepare_norms(rule_->norms);
    }
    hyper_.assign(std::size_t(group_count) * rule_->fields.size(), 0.0);
    steps_done_.assign(group_count, 0);
    fresh_.assign(group_count, 1);
    for (int k = 0; k < group_count; ++k) scalars_.insert(scalars_.end(), rule_->scalar_init.begin(), rule_->scalar_init.end());
    f32_.coeffs.assign((std::size_t(group_count) * rule_->coeffs_f32_size) / sizeof(double) + 1, 0.0);
    f64_.coeffs.assign((std::size_t(group_count) * rule_->coeffs_f64_size) / sizeof(double) + 1, 0.0);
}

void Plan::set_hyper(int group, const std::vector<double>& row) {
    if (group < 0 || group >= group_count_) throw py::index_error("group index out of range");
    if (row.size() != rule_->fields.size()) throw py::value_error("hyper-parameter row of the wrong length");
    std::copy(row.begin(), row.end(), hyper_.begin() + std::ptrdiff_t(group * row.size()));
}

void Plan::set_clock(int group, std::int64_t steps_done, bool fresh) {
    if (group < 0 || group >= group_count_) throw py::index_error("group index out of range");
    if (steps_done < 0) throw py::value_error("step must be >= 0");
    steps_done_[group] = steps_done;
    fresh_[group] = fresh;
}

void Plan::check_group(int group) const {
    if (group < 0 || group >= group_count_) throw py::index_error("group index out of range");
}

std::int64_t Plan::steps_done(int group) const {
    check_group(group);
    return steps_done_[group];
}

bool Plan::fresh(int group) const {
    check_group(group);
    return fresh_[group] != 0;
}

std::vector<double> Plan::scalars(int group) const {
    check_group(group);
    const std::size_t n = rule_->scalar_names.size();
    return {scalars_.begin() + std::ptrdiff_t(group * n), scalars_.begin() + std::ptrdiff_t((group + 1) * n)};
}

void Plan::set_scalars(int group, const std::vector<double>& values) {
    check_group(group);
    const std::size_t n = rule_->scalar_names.size();
    if (values.size() != n) throw py::value_error("wrong number of running scalars");
    std::copy(values.begin(), values.end(), scalars_.begin() + std::ptrdiff_t(group * n));
}

std::string Plan::label(std::size_t i) const {
    return "grads[" + py::repr(params_[i].name).cast<std::string>() + "]";
}

void Plan::check_grad_container(py::handle grads) const {
    const std::size_t n = params_.size();
    if (PyDict_Check(grads.ptr())) {
        for (std::size_t i = 0; i < n; ++i) {
            const int has = PyDict_Contains(grads.ptr(), params_[i].name.ptr());
            if (has < 0) throw py::error_already_set();
            if (!has) throw py::value_error("grads has no entry for parameter " + py::repr(params_[i].name).cast<std::string>());
        }
        if (std::size_t(PyDict_Size(grads.ptr())) != n) {
            py::set known;
            for (const Param& p : params_) known.add(p.name);
            for (auto key : py::reinterpret_borrow<py::dict>(grads))
                if (!known.contains(key.first))
                    throw py::value_error("grads has an entry for " + py::repr(key.first).cast<std::string>() +
                                          ", which is not a parameter of this optimizer");
        }
        return;
    }
    if (PyList_Check(grads.ptr()) || PyTuple_Check(grads.ptr())) {
        const std::size_t got = std::size_t(PySequence_Fast_GET_SIZE(grads.ptr()));
        if (got != n)
            throw py::value_error("grads has " + std::to_string(got) + " arrays; the optimizer has " + std::to_string(n) + " parameters");
        return;
    }
    throw py::type_error("grads must be a dict keyed like the parameters or a list in their order, got " +
                         std::string(Py_TYPE(grads.ptr())->tp_name));
}

PyObject* Plan::grad_at(py::handle grads, std::size_t i) const {
    if (PyDict_Check(grads.ptr())) return PyDict_GetItemWithError(grads.ptr(), params_[i].name.ptr());
    return PySequence_Fast_GET_ITEM(grads.ptr(), Py_ssize_t(i));
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
    const Param& p = params_[i];
    const auto& api = npy::get();
    if (grad == nullptr || !api.PyArray_Check_(grad))
        throw py::type_error(label(i) + " must be a numpy.ndarray, got " + std::string(grad ? Py_TYPE(grad)->tp_name : "nothing"));
    const auto* g = py::detail::array_proxy(grad);
    const auto* descr = py::detail::array_descriptor_proxy(g->descr);
    const int want = p.is_double ? npy::NPY_DOUBLE_ : npy::NPY_FLOAT_;
    if (descr->type_num != want || !native_byte_order(descr->byteorder))
        throw py::type_error(label(i) + " has dtype " + py::str(py::handle(g->descr)).cast<std::string>() +
                             "; its parameter is " + (p.is_double ? "float64" : "float32"));
    const bool same_shape = g->nd == int(p.shape.size()) && std::equal(p.shape.begin(), p.shape.end(), g->dimensions);
    if (!same_shape)
        throw py::value_error(label(i) + " has shape " + shape_text(g->dimensions, g->nd) + "; its parameter has shape " +
                              shape_text(p.shape.data(), int(p.shape.size())));
    const bool c = g->flags & npy::NPY_ARRAY_C_CONTIGUOUS_, f = g->flags & npy::NPY_ARRAY_F_CONTIGUOUS_;
    const bool same_order = p.c_contiguous ? c : f;  // a parameter both C and F accepts either: then c == f
    if (!same_order)
        throw py::value_error(label(i) + (c || f ? " is not in its parameter's memory order (" : " is not contiguous (") +
                              std::string(p.c_contiguous ? "C" : "Fortran") + "-contiguous expected)");
    const char* begin = g->data;
    const std::size_t bytes = std::size_t(p.is_double ? 8 : 4) *
                              std::size_t(p.is_double ? f64_.refs[p.index].size : f32_.refs[p.index].size);
    if (overlaps_owned_memory(begin, begin + bytes))
        throw py::value_error(label(i) + " shares memory with a parameter or an optimizer state array");
    if (p.is_double) f64_.refs[p.index].grad = reinterpret_cast<const double*>(g->data);
    else f32_.refs[p.index].grad = reinterpret_cast<const float*>(g->data);
}

void Plan::step(py::handle grads) {
    if (!rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' reads no gradients: use apply()");
    check_grad_container(grads);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        PyObject* g = grad_at(grads, i);
        if (g == nullptr && PyErr_Occurred()) throw py::error_already_set();
        attach_grad(i, g);
    }
    run();
}

void Plan::apply() {
    if (rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' needs gradients: use step(grads)");
    run();
}

void Plan::run() {
    const std::size_t fields = rule_->fields.size(), n_scalars = rule_->scalar_names.size();
    std::vector<double>& next = scratch_scalars_;
    next = scalars_;  // advanced here, kept only once the step has run
    for (int k = 0; k < group_count_; ++k) {
        const double* row = hyper_.data() + k * fields;
        double* scalars = next.data() + k * n_scalars;
        const Clock clock{steps_done_[k] + 1, fresh_[k] != 0, scalars};
        rule_->advance(row, clock, scalars);
        rule_->fold(row, clock, reinterpret_cast<char*>(f32_.coeffs.data()) + k * rule_->coeffs_f32_size,
                    reinterpret_cast<char*>(f64_.coeffs.data()) + k * rule_->coeffs_f64_size);
    }
    const bool cold = step_is_cold();
    const int requested = num_threads();
    const int threads = backoff_.threads_for_step(requested, cold);
    steps_alone_ += threads < requested;
    const StepRequest request{rule_->id, f32_.work(), f64_.work(), threads, prefetch_above()};
    PieceCounts counts;
    double seconds;
    {
        py::gil_scoped_release unlocked;
        const auto start = std::chrono::steady_clock::now();
        place_workers(threads);
        counts = current_target().step(request);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        note_step_end();
    }
    backoff_.record(cold, counts, seconds);
    last_seconds_ = seconds;
    last_threads_ = counts.parallel ? threads : 1;
    scalars_.swap(next);
    for (int k = 0; k < group_count_; ++k) {
        ++steps_done_[k];
        fresh_[k] = 0;
    }
}

}  // namespace fastoptim
