// The arrays a plan keeps besides its rule's state: the buffers gradients accumulate in
// between steps (summed here, read and cleared by the step's sweep), and the EMA of the
// parameters (updated by the sweep; here for the parameters a step leaves out, and after
// Lookahead's synchronisation).
#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>

#include "plan.hpp"
#include "fastoptim/runtime/settings.hpp"

namespace fastoptim {
namespace {

// torch.lerp(ema, p, w) element by element, as the kernels' lerp_toward computes it; `value(i)`
// is p[i] (a bfloat16 parameter's widened exactly).
template <class T, class Value>
void lerp_array(T* ema, const Value& value, index_t n, T w) {
    for (index_t i = 0; i < n; ++i) {
        const T p = value(i);
        ema[i] = w < T(0.5) ? ema[i] + w * (p - ema[i]) : p - (p - ema[i]) * (T(1) - w);
    }
}

float widened(std::uint16_t bits) {
    const std::uint32_t u = std::uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

}  // namespace

void Plan::lerp_left_out(double weight) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (active_[i]) continue;
        const Param& p = params_[i];
        char* ema = p.extra_records[int(Extra::ema)].data();
        const index_t n = index_t(p.record.size());
        if (p.record.is_double()) {
            const auto* x = reinterpret_cast<const double*>(p.record.data());
            lerp_array(reinterpret_cast<double*>(ema), [x](index_t k) { return x[k]; }, n, weight);
        } else if (p.record.is_bfloat16()) {
            const auto* x = reinterpret_cast<const std::uint16_t*>(p.record.data());
            lerp_array(reinterpret_cast<float*>(ema), [x](index_t k) { return widened(x[k]); }, n, float(weight));
        } else {
            const auto* x = reinterpret_cast<const float*>(p.record.data());
            lerp_array(reinterpret_cast<float*>(ema), [x](index_t k) { return x[k]; }, n, float(weight));
        }
    }
}

void Plan::accumulate(py::handle grads, double grad_mult) {
    check_grad_mult(grad_mult, !f32_.refs.empty());
    if (!has_extra_[int(Extra::accumulated)]) throw py::value_error("Plan: this plan has no accumulation buffers");
    if (!rule_->needs_grad) throw py::type_error("rule '" + rule_->name + "' reads no gradients");
    const Busy busy(busy_);
    const GradsHeld held(*this);
    take_grads(grads, true);  // the pass writes the buffers only
    const int threads = num_threads();
    check_guards();  // after take_grads, whose pins of the gradients may run Python code
    {
        std::optional<py::gil_scoped_release> unlocked;
        if (release_gil_) unlocked.emplace();
        accumulate_now(grad_mult, threads);
    }
    ++pending_;
    for (std::size_t i = 0; i < params_.size(); ++i) touched_[i] = char(touched_[i] | active_[i]);
}

void Plan::accumulate_now(double grad_mult, int threads) {
    // The buffers as the `param` of a scaling pass that adds each gradient given (held in grads_,
    // read where take_grads checked it: the refs may point at the buffers by now).
    auto& [r32, r64] = sum_refs_;
    auto& [o32, o64] = sum_offsets_;
    r32.clear();
    r64.clear();
    o32.assign(1, 0);
    o64.assign(1, 0);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (grads_[i].is_none()) continue;
        auto add = [&](auto& refs, auto& offsets, const auto& ref) {
            using T = std::remove_const_t<std::remove_pointer_t<decltype(ref.grad)>>;
            ArrayRef<T> r;
            r.param = reinterpret_cast<T*>(params_[i].extra_records[int(Extra::accumulated)].data());
            if (params_[i].record.is_bfloat16())  // a bfloat16 gradient into a float32 buffer
                r.grad_bits = reinterpret_cast<const std::uint16_t*>(grad_data_[i]);
            else
                r.grad = reinterpret_cast<const T*>(grad_data_[i]);  // as take_grads checked it
            r.size = ref.size;
            refs.push_back(r);
            offsets.push_back(offsets.back() + r.size);
        };
        if (params_[i].record.is_double()) add(r64, o64, ref_of<double>(i));
        else add(r32, o32, ref_of<float>(i));
    }
    ScaleRequest request{Work<float>{}, Work<double>{}, grad_mult, threads, true, prefetch_above()};
    request.f32.arrays = r32.data();
    request.f32.offsets = o32.data();
    request.f32.count = index_t(r32.size());
    request.f64.arrays = r64.data();
    request.f64.offsets = o64.data();
    request.f64.count = index_t(r64.size());
    current_target().scale(request);
}

void Plan::clear_buffers() {
    for (Param& p : params_) {
        const ArrayRecord& r = p.extra_records[int(Extra::accumulated)];
        if (r.nbytes()) std::memset(r.data(), 0, std::size_t(r.nbytes()));
    }
    pending_ = 0;
    std::fill(touched_.begin(), touched_.end(), char(0));
}

bool Plan::touched(int param) const {
    check_param(param);
    return touched_[std::size_t(param)] != 0;
}

void Plan::set_pending(std::int64_t pending, const std::vector<bool>& touched) {
    if (touched.size() != params_.size()) throw py::value_error("set_pending: one flag per parameter expected");
    if (pending < 0) throw py::value_error("the number of accumulated micro-batches must be >= 0");
    if (pending > 0 && !has_extra_[int(Extra::accumulated)]) throw py::value_error("Plan: no accumulation buffers");
    const Busy busy(busy_);
    pending_ = pending;
    for (std::size_t i = 0; i < touched.size(); ++i) touched_[i] = char(pending > 0 && touched[i]);
}

void Plan::set_ema(double decay, bool warmup, std::int64_t updates) {
    if (!(decay <= 1) || (decay >= 0 && !has_extra_[int(Extra::ema)]))  // NaN fails too
        throw py::value_error("Plan: an EMA needs decay in [0, 1] and its arrays");
    if (updates < 0 || updates >= kMaxSteps) throw py::value_error("the number of EMA updates must be in [0, 2**53)");
    const Busy busy(busy_);
    ema_decay_ = decay < 0 ? -1.0 : decay;
    ema_warmup_ = warmup;
    ema_updates_ = updates;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        char* at = decay >= 0 ? params_[i].extra_records[int(Extra::ema)].data() : nullptr;
        if (params_[i].record.is_double()) ref_of<double>(i).ema = reinterpret_cast<double*>(at);
        else ref_of<float>(i).ema = reinterpret_cast<float*>(at);
    }
    ema_on_ = decay >= 0;
}

double Plan::next_ema_weight() const {
    const double t = double(ema_updates_ + 1);
    return 1 - (ema_warmup_ ? std::min(ema_decay_, (1 + t) / (10 + t)) : ema_decay_);
}

void Plan::update_ema() {
    if (ema_decay_ < 0) throw py::value_error("Plan: no EMA to update");
    const Busy busy(busy_);
    check_arrays();
    const double weight = next_ema_weight();
    check_guards();
    std::fill(active_.begin(), active_.end(), char(0));  // every parameter is "left out" of a step
    active_count_ = 0;
    {
        std::optional<py::gil_scoped_release> unlocked;
        if (release_gil_) unlocked.emplace();
        lerp_left_out(weight);
    }
    ++ema_updates_;
}

void Plan::set_guards(py::list guards) {
    // A step checks its guards after taking its gradients, which may run Python code (a finalizer
    // the collector starts): guards changed then would leave views taken unchecked.
    if (busy_)
        throw std::runtime_error("this optimizer's memory guards cannot change while its plan is stepping (from "
                                 "Python code the step called); change the gradients after the step");
    guards_ = read_tensor_guards(guards);
}

void Plan::check_guards() const { check_tensor_guards(guards_); }

}  // namespace fastoptim
