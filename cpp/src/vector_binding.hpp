// Python's entry to L-BFGS's vector algebra (vector_algebra.hpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

void bind_vector_algebra(pybind11::module_& m);

}  // namespace fastoptim
