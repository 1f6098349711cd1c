// The native half of fastoptim.get_total_norm and clip_grad_norm_: a list of float32 and float64
// arrays, each checked, held and kept from being resized, then measured or scaled in place by
// the threaded kernels of grad_norm.hpp with the GIL released.
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

namespace py = pybind11;

// (Σu², Σ|u| or max |u| of u = g·mult over every element (kind 0, 1, 2), whether every
// element is finite). Arrays are labelled grads[i] in messages; with `writable` they are
// checked as scale_arrays_in_place checks them (clip_grad_norm_ refuses before it measures).
// With `guards` (tensor_guards.hpp's: fastoptim.torch's views) they are re-checked after the
// arrays and the measure keeps the GIL.
py::tuple measure_arrays(py::handle arrays, int kind, double mult, bool writable, py::handle guards);

// Every array multiplied in place by `factor`; they must be writable and share no memory.
void scale_arrays_in_place(py::handle arrays, double factor);

}  // namespace fastoptim
