// The gradients of one step, found and checked in one home: by a plan before its kernels run,
// and by the distributed optimizers on every rank before any message is sent (so that a rank
// whose gradients the step would refuse fails before the others wait for it).
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "array_check.hpp"

namespace fastoptim {

namespace py = pybind11;

std::string repr_text(py::handle h);

// A problem from array_problem as the exception Python users expect: TypeError for the wrong
// kind of object or dtype, ValueError for everything else.
[[noreturn]] void refuse(const std::string& label, const std::string& problem);

// `grads` (a dict keyed by `names`, or a list or tuple in their order) in parameter order, as
// owned references, into `out`. May run Python code (a name's __eq__), so each gradient is
// held the moment it is found.
void order_grads(py::handle grads, const std::vector<py::object>& names, std::vector<py::object>& out);

// Refuses `grad` (labelled grads[name]) unless it is an array with the dtype, shape and memory
// order of the parameter recorded in `param`. A few compares when it fits.
void check_grad_beside(const ArrayRecord& param, PyObject* grad, py::handle name);

// `_core.check_grads`: the distributed optimizers' check, the plan's own without a step.
// `grads` in the order of `names`, each checked beside its parameter in `params`; with
// `writable`, each also writable and sharing memory with no other gradient and no parameter,
// since the average is written into it.
py::list check_grads(py::handle grads, const std::vector<py::object>& names, py::list params, bool writable);

}  // namespace fastoptim
