// fastoptim.quantize_blockwise / dequantize_blockwise: 8-bit state's format (int8_state.hpp)
// from Python, for conversions between layouts and for inspection.
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

void bind_blockwise(pybind11::module_& m);

}  // namespace fastoptim
