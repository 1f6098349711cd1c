// Python's entry to the row-sparse steps (row_passes.hpp) and to the coalescing of row-sparse
// gradients that precedes them.
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

void bind_row_passes(pybind11::module_& m);

}  // namespace fastoptim
