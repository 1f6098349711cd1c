// fastoptim._core.probe: the bandwidth probe on NumPy arrays, on the current target.
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

void run_probe(pybind11::list arrays, int writes, int threads);

}  // namespace fastoptim
