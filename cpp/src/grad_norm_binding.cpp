#include "grad_norm_binding.hpp"

#include <pybind11/numpy.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "array_check.hpp"
#include "grad_check.hpp"
#include "fastoptim/runtime/settings.hpp"
#include "tensor_guards.hpp"

namespace fastoptim {
namespace {

std::string label(std::size_t i) { return "grads[" + std::to_string(i) + "]"; }

// The arrays of one call, held (the caller's list may drop them while the kernels run) and
// guarded, with each dtype's refs laid end to end as a step lays out its gradients.
struct Gathered {
    std::vector<py::object> held;
    BufferGuard guard;
    std::vector<ArrayRef<float>> f32;
    std::vector<ArrayRef<double>> f64;
    std::vector<index_t> offsets32{0}, offsets64{0}, blocks32{0}, blocks64{0};
    std::vector<double> partials32, partials64;
    std::vector<int> group32, group64;

    Gathered(py::handle arrays, bool writable) {
        if (!PyList_Check(arrays.ptr()) && !PyTuple_Check(arrays.ptr()))
            throw py::type_error("grads must be a list or tuple of arrays");
        // A snapshot first: it holds every item, whatever another thread does to the list.
        const auto items = py::reinterpret_steal<py::tuple>(PySequence_Tuple(arrays.ptr()));
        if (!items) throw py::error_already_set();
        const std::size_t n = items.size();
        for (std::size_t i = 0; i < n; ++i) {
            py::object a = items[i];
            if (!py::detail::npy_api::get().PyArray_Check_(a.ptr()))
                throw py::type_error(label(i) + " must be a numpy.ndarray, got " + std::string(Py_TYPE(a.ptr())->tp_name));
            held.push_back(std::move(a));
        }
        for (const py::object& a : held) guard.guard(a.ptr());  // may run Python code: before the checks
        std::vector<std::tuple<const char*, const char*, std::size_t>> spans;
        for (std::size_t i = 0; i < n; ++i) {  // from here on no Python code runs
            const std::string problem = array_problem(held[i].ptr(), ArrayNeeds{-1, nullptr, 0, false});
            if (!problem.empty()) refuse(label(i), problem);
            if (writable && !(py::detail::array_proxy(held[i].ptr())->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
                throw py::value_error(label(i) + " is read-only; clip_grad_norm_ scales the gradients in place");
            const ArrayRecord record(held[i].ptr());
            if (record.nbytes()) spans.emplace_back(record.data(), record.data() + record.nbytes(), i);
            if (record.is_double()) add(f64, offsets64, blocks64, record);
            else add(f32, offsets32, blocks32, record);
        }
        if (writable) {
            std::sort(spans.begin(), spans.end());
            for (std::size_t k = 1; k < spans.size(); ++k)
                if (std::get<0>(spans[k]) < std::get<1>(spans[k - 1]))
                    throw py::value_error(label(std::min(std::get<2>(spans[k - 1]), std::get<2>(spans[k]))) + " and " +
                                          label(std::max(std::get<2>(spans[k - 1]), std::get<2>(spans[k]))) +
                                          " share memory; each array must own its elements");
        }
        partials32.assign(2 * std::size_t(blocks32.back()), 0.0);
        partials64.assign(2 * std::size_t(blocks64.back()), 0.0);
        group32.assign(f32.size(), 0);
        group64.assign(f64.size(), 0);
    }

    template <class T>
    static void add(std::vector<ArrayRef<T>>& refs, std::vector<index_t>& offsets, std::vector<index_t>& blocks,
                    const ArrayRecord& record) {
        ArrayRef<T> ref;
        ref.param = reinterpret_cast<T*>(record.data());
        ref.grad = ref.param;
        ref.size = index_t(record.nbytes() / sizeof(T));
        refs.push_back(ref);
        offsets.push_back(offsets.back() + ref.size);
        blocks.push_back(blocks.back() + (ref.size + kBlock - 1) / kBlock);
    }

    template <class T>
    static Work<T> work(const std::vector<ArrayRef<T>>& refs, const std::vector<index_t>& offsets,
                        const std::vector<int>& group) {
        Work<T> w;
        w.arrays = refs.data();
        w.offsets = offsets.data();
        w.group = group.data();
        w.count = index_t(refs.size());
        return w;
    }
};

}  // namespace

namespace {

// A factor the float32 arrays can take: converting a finite double beyond float's range is
// undefined behaviour in C++ (inf and NaN convert as themselves).
void check_factor(double factor, const Gathered& g, const char* name) {
    if (!g.f32.empty() && std::isfinite(factor) && std::fabs(factor) > double(std::numeric_limits<float>::max()))
        throw py::value_error(std::string(name) + " is beyond float32's range");
}

}  // namespace

py::tuple measure_arrays(py::handle arrays, int kind, double mult, bool writable, py::handle guards) {
    if (kind < 0 || kind > 2) throw py::value_error("kind must be 0 (l2), 1 (l1) or 2 (max)");
    const std::vector<TensorGuard> checked = read_tensor_guards(guards);
    Gathered g(arrays, writable);
    check_factor(mult, g, "mult");
    const NormRequest request{NormOptions{NormKind(kind), true},
                              GradBlocks<float>{g.f32.data(), index_t(g.f32.size()), g.blocks32.data(),
                                                g.partials32.data(), float(mult)},
                              GradBlocks<double>{g.f64.data(), index_t(g.f64.size()), g.blocks64.data(),
                                                 g.partials64.data(), mult},
                              num_threads()};
    GradMeasure m;
    if (checked.empty()) {
        py::gil_scoped_release unlocked;
        m = current_target().norm(request);
    } else {  // views of torch tensors: checked after the last call that may run Python code, read with the GIL
        check_tensor_guards(checked);
        m = current_target().norm(request);
    }
    return py::make_tuple(m.value, m.finite);
}

void scale_arrays_in_place(py::handle arrays, double factor) {
    Gathered g(arrays, true);
    check_factor(factor, g, "factor");
    const ScaleRequest request{Gathered::work(g.f32, g.offsets32, g.group32), Gathered::work(g.f64, g.offsets64, g.group64),
                               factor, num_threads()};
    py::gil_scoped_release unlocked;
    current_target().scale(request);
}

}  // namespace fastoptim
