// The call checks every array it is given and runs with the GIL held, after its numbers were
// converted: no Python code runs between the checks and the last store.
#include "vector_binding.hpp"

#include <pybind11/numpy.h>

#include <string>
#include <tuple>

#include "array_check.hpp"
#include "fastoptim/runtime/settings.hpp"

namespace fastoptim {
namespace {

namespace py = pybind11;

template <class T>
CombineSums run(const py::object& out, const py::array& x, double a, const py::object& y, double b,
                const py::object& z, bool want_abs) {
    constexpr bool is_double = std::is_same_v<T, double>;
    Combine<T> c;
    c.x = static_cast<const T*>(float_array_data(x, "x", is_double, false, -1, true));
    c.size = index_t(x.size());
    if (!out.is_none())
        c.out = static_cast<T*>(float_array_data(py::reinterpret_borrow<py::array>(out), "out", is_double, true,
                                                 c.size, true));
    c.a = narrow<T>(a);
    if (!y.is_none())
        c.y = static_cast<const T*>(float_array_data(py::reinterpret_borrow<py::array>(y), "y", is_double, false, c.size, true));
    c.b = narrow<T>(b);
    if (!z.is_none())
        c.z = static_cast<const T*>(float_array_data(py::reinterpret_borrow<py::array>(z), "z", is_double, false, c.size, true));
    c.want_abs = want_abs;
    return current_target().combine(CombineRequest{is_double, &c, num_threads()});
}

std::tuple<double, double, double> combine_arrays(const py::object& out, const py::array& x, double a, const py::object& y,
                                           double b, const py::object& z, bool want_abs) {
    for (const auto& [value, label] : {std::pair{out, "out"}, std::pair{y, "y"}, std::pair{z, "z"}})
        if (!value.is_none() && !py::isinstance<py::array>(value))
            throw py::type_error(std::string(label) + " must be a numpy.ndarray or None");
    const CombineSums sums = x.dtype().equal(py::dtype::of<double>()) ? run<double>(out, x, a, y, b, z, want_abs)
                                                                     : run<float>(out, x, a, y, b, z, want_abs);
    return {sums.dot, sums.abs_max, sums.abs_sum};
}

}  // namespace

void bind_vector_algebra(py::module_& m) {
    m.def("combine", &combine_arrays, py::arg("out"), py::arg("x"), py::arg("a"), py::arg("y"), py::arg("b"), py::arg("z"),
          py::arg("want_abs") = false,
          "o = a·x + b·y (y None: a·x), written to out (unless None); returns (Σ o·z (0 if z is None), max |o|, "
          "Σ |o|), the last two with want_abs; every array of x's dtype (float32 or float64) and size, C order");
}

}  // namespace fastoptim
