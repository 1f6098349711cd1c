#include "probe_binding.hpp"

#include <pybind11/numpy.h>

#include <vector>

#include "runtime.hpp"

namespace fastoptim {

namespace py = pybind11;

void run_probe(py::list arrays, int writes, int threads) {
    std::vector<void*> pointers;
    index_t n = -1;
    int dtype = -1;
    const int f32 = py::dtype::of<float>().num(), f64 = py::dtype::of<double>().num();
    for (py::handle h : arrays) {
        if (!py::isinstance<py::array>(h)) throw py::type_error("probe: arrays must be numpy arrays");
        py::array a = py::reinterpret_borrow<py::array>(h);
        if (!(a.flags() & py::array::c_style) || !a.writeable())
            throw py::type_error("probe: arrays must be writable and C-contiguous");
        if (dtype == -1) dtype = a.dtype().num();
        if (a.dtype().num() != dtype || (dtype != f32 && dtype != f64))
            throw py::type_error("probe: arrays must all be float32 or all float64");
        if (n != -1 && index_t(a.size()) != n) throw py::value_error("probe: arrays differ in size");
        n = index_t(a.size());
        pointers.push_back(a.mutable_data());
    }
    if (threads < 1) throw py::value_error("probe: threads must be >= 1");
    const ProbeRequest request{pointers.data(), dtype == f64, int(pointers.size()), writes, n, threads, prefetch_above()};
    bool ok;
    {
        py::gil_scoped_release unlocked;
        ok = current_target().probe(request);
    }
    if (!ok) throw py::value_error("probe: needs 1 to 6 arrays and 0 to len(arrays) writes");
}

}  // namespace fastoptim
