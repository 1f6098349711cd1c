#include "probe_binding.hpp"

#include <pybind11/numpy.h>

#include <cstdint>
#include <vector>

#include "array_check.hpp"
#include "fastoptim/runtime/settings.hpp"

namespace fastoptim {

namespace py = pybind11;

void run_probe(py::list arrays, int writes, int threads) {
    // Fixed storage: at 1e4 elements a sweep takes microseconds, and the probe is the yardstick.
    constexpr std::size_t kMaxArrays = 8;
    // A snapshot first: it holds every item, whatever another thread does to the list.
    const auto items = py::reinterpret_steal<py::tuple>(PySequence_Tuple(arrays.ptr()));
    if (!items) throw py::error_already_set();
    const std::size_t count = items.size();
    if (count < 1 || count > kMaxArrays || writes < 0 || std::size_t(writes) > count)
        throw py::value_error("probe: needs 1 to 8 arrays and 0 to len(arrays) writes");
    if (threads < 1) throw py::value_error("probe: threads must be >= 1");
    void* pointers[kMaxArrays];
    index_t n = -1;
    int dtype = -1, halves = 0;
    const int f32 = py::dtype::of<float>().num(), f64 = py::dtype::of<double>().num();
    const int u16 = py::dtype::of<std::uint16_t>().num();
    for (std::size_t k = 0; k < count; ++k) {
        PyObject* h = PyTuple_GET_ITEM(items.ptr(), Py_ssize_t(k));
        if (!py::detail::npy_api::get().PyArray_Check_(h)) throw py::type_error("probe: arrays must be numpy arrays");
        py::array a = py::reinterpret_borrow<py::array>(h);
        if (!(a.flags() & py::array::c_style) || !a.writeable())
            throw py::type_error("probe: arrays must be writable and C-contiguous");
        const int num = a.dtype().num();
        if (dtype == -1) dtype = num;
        if (num == u16 && dtype == f32) {
            ++halves;  // bfloat16 state's bytes: read and written
        } else if (num != dtype || halves > 0 || (dtype != f32 && dtype != f64)) {
            throw py::type_error("probe: arrays must all be float32 or all float64, the float32 ones optionally "
                                 "followed by uint16 ones");
        }
        if (n != -1 && index_t(a.size()) != n) throw py::value_error("probe: arrays differ in size");
        n = index_t(a.size());
        pointers[k] = a.mutable_data();
    }
    const int reads = int(count) - halves;
    if (writes > reads) throw py::value_error("probe: writes counts the float arrays only");
    BufferGuard guard;  // no thread may resize them while the sweep runs
    for (std::size_t k = 0; k < count; ++k) guard.guard(PyTuple_GET_ITEM(items.ptr(), Py_ssize_t(k)));
    for (std::size_t k = 0; k < count; ++k) {  // still as checked, after any Python code guarding ran
        const auto* a = py::detail::array_proxy(PyTuple_GET_ITEM(items.ptr(), Py_ssize_t(k)));
        index_t size = 1;
        for (int d = 0; d < a->nd; ++d) size *= index_t(a->dimensions[d]);
        if (a->data != pointers[k] || size != n || !(a->flags & py::array::c_style) ||
            !(a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
            throw py::value_error("probe: an array changed while it was being guarded");
    }
    const ProbeRequest request{pointers, dtype == f64, reads, writes, halves, n, threads, prefetch_above()};
    bool ok;
    {
        py::gil_scoped_release unlocked;
        ok = current_target().probe(request);
    }
    if (!ok) throw py::value_error("probe: needs 1 to 6 float arrays, 0 to 4 uint16 ones, at most 8 in all");
}

}  // namespace fastoptim
