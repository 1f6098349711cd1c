// Python's entry to the element-wise passes of Adafactor and Muon (matrix_passes.hpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

void bind_matrix_passes(pybind11::module_& m);

}  // namespace fastoptim
