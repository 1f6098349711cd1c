#include "grad_check.hpp"

#include <pybind11/numpy.h>

#include <algorithm>
#include <tuple>

namespace fastoptim {

using npy = py::detail::npy_api;

std::string repr_text(py::handle h) { return py::repr(h).cast<std::string>(); }

void refuse(const std::string& label, const std::string& problem) {
    const std::string text = label + " " + problem;
    if (problem.rfind("must be", 0) == 0 || problem.rfind("has dtype", 0) == 0) throw py::type_error(text);
    throw py::value_error(text);
}

namespace {
std::string grad_label(py::handle name) { return "grads[" + repr_text(name) + "]"; }
}  // namespace

void order_grads(py::handle grads, const std::vector<py::object>& names, std::vector<py::object>& out) {
    const std::size_t n = names.size();
    out.clear();
    if (PyDict_Check(grads.ptr())) {
        for (std::size_t i = 0; i < n; ++i) {
            PyObject* g = PyDict_GetItemWithError(grads.ptr(), names[i].ptr());
            if (g == nullptr) {
                if (PyErr_Occurred()) throw py::error_already_set();
                throw py::value_error("grads has no entry for parameter " + repr_text(names[i]));
            }
            out.push_back(py::reinterpret_borrow<py::object>(g));  // the next lookup may drop the dict's reference
        }
        if (std::size_t(PyDict_Size(grads.ptr())) != n) {
            py::set known;
            for (const py::object& name : names) known.add(name);
            const py::list keys = py::reinterpret_steal<py::list>(PyDict_Keys(grads.ptr()));  // owned: safe to compare
            for (py::handle key : keys)
                if (!known.contains(key))
                    throw py::value_error("grads has an entry for " + repr_text(key) + ", which is not a parameter of this optimizer");
        }
        return;
    }
    if (PyList_Check(grads.ptr()) || PyTuple_Check(grads.ptr())) {
        const std::size_t got = std::size_t(PySequence_Fast_GET_SIZE(grads.ptr()));
        if (got != n)
            throw py::value_error("grads has " + std::to_string(got) + " arrays; the optimizer has " + std::to_string(n) + " parameters");
        for (std::size_t i = 0; i < n; ++i) out.push_back(py::reinterpret_borrow<py::object>(PySequence_Fast_GET_ITEM(grads.ptr(), Py_ssize_t(i))));
        return;
    }
    throw py::type_error("grads must be a dict keyed like the parameters or a list in their order, got " +
                         std::string(Py_TYPE(grads.ptr())->tp_name));
}

void check_grad_beside(const ArrayRecord& param, PyObject* grad, py::handle name) {
    if (npy::get().PyArray_Check_(grad) && param.fits_beside(grad)) return;
    const int type = param.is_double() ? npy::NPY_DOUBLE_ : param.is_bfloat16() ? kBfloat16Values : npy::NPY_FLOAT_;
    const ArrayNeeds needs{type, &param.shape(), param.order(), false};
    refuse(grad_label(name), array_problem(grad, needs));
}

py::list check_grads(py::handle grads, const std::vector<py::object>& names, py::list params, bool writable) {
    if (params.size() != names.size()) throw py::value_error("check_grads: params and names differ in length");
    std::vector<py::object> ordered;
    order_grads(grads, names, ordered);
    std::vector<std::tuple<const char*, const char*, std::size_t>> spans;  // [begin, end), index (grads first)
    for (std::size_t i = 0; i < names.size(); ++i) {
        const std::string problem = array_problem(params[i].ptr(), ArrayNeeds{kParamTypes});
        if (!problem.empty()) refuse("params[" + repr_text(names[i]) + "]", problem);
        if (ordered[i].is_none()) continue;  // the parameter is left alone
        ArrayRecord param(params[i].ptr());
        param.set_exact_bfloat16();
        check_grad_beside(param, ordered[i].ptr(), names[i]);
        if (!writable) continue;
        const auto* g = py::detail::array_proxy(ordered[i].ptr());
        if (!(g->flags & npy::NPY_ARRAY_WRITEABLE_))
            throw py::value_error(grad_label(names[i]) + " is read-only; the average is written into it");
        if (param.nbytes() == 0) continue;
        spans.emplace_back(g->data, g->data + param.nbytes(), i);
        spans.emplace_back(param.data(), param.data() + param.nbytes(), names.size() + i);
    }
    std::sort(spans.begin(), spans.end());
    auto label = [&](std::size_t k) {
        return k < names.size() ? grad_label(names[k]) : "params[" + repr_text(names[k - names.size()]) + "]";
    };
    for (std::size_t k = 1; k < spans.size(); ++k)
        if (std::get<0>(spans[k]) < std::get<1>(spans[k - 1])) {
            std::string first = label(std::get<2>(spans[k - 1])), second = label(std::get<2>(spans[k]));
            if (second < first) std::swap(first, second);
            throw py::value_error(first + " and " + second + " share memory; each gradient must own its elements");
        }
    py::list out;
    for (py::object& g : ordered) out.append(std::move(g));
    return out;
}

}  // namespace fastoptim
