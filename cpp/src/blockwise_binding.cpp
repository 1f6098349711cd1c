#include "blockwise_binding.hpp"

#include <pybind11/numpy.h>

#include <string>

#include "fastoptim/int8_state.hpp"

namespace fastoptim {
namespace {

namespace py = pybind11;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Codes = py::array_t<std::uint8_t, py::array::c_style>;

// The baseline target's vectors: every target gives the same codes, so the fastest one is not needed here.
using V = NativeVec<float>;

py::tuple quantize(const Floats& values, bool is_unsigned) {
    const index_t n = index_t(values.size());
    Codes codes(std::vector<py::ssize_t>(values.shape(), values.shape() + values.ndim()));
    py::array_t<float> absmax(py::ssize_t(code_blocks(n)));
    const float* in = values.data();
    std::uint8_t* out = codes.mutable_data();
    float* scales = absmax.mutable_data();
    for (index_t b = 0; b < n; b += kCodeBlock) {
        const index_t len = std::min(kCodeBlock, n - b);
        if (is_unsigned) encode_block<true, V>(in + b, len, out + b, scales + b / kCodeBlock);
        else encode_block<false, V>(in + b, len, out + b, scales + b / kCodeBlock);
    }
    return py::make_tuple(codes, absmax);
}

py::array_t<float> dequantize(const Codes& codes, const Floats& absmax, bool is_unsigned) {
    const index_t n = index_t(codes.size());
    if (absmax.ndim() != 1 || index_t(absmax.size()) != code_blocks(n))
        throw py::value_error("absmax must hold one float32 per block of " + std::to_string(kCodeBlock) +
                              " codes: " + std::to_string(code_blocks(n)) + " for " + std::to_string(n) + " codes");
    py::array_t<float> values(std::vector<py::ssize_t>(codes.shape(), codes.shape() + codes.ndim()));
    const std::uint8_t* in = codes.data();
    float* out = values.mutable_data();
    for (index_t b = 0; b < n; b += kCodeBlock) {
        const index_t len = std::min(kCodeBlock, n - b);
        if (is_unsigned) decode_block<true, V>(in + b, len, absmax.at(b / kCodeBlock), out + b);
        else decode_block<false, V>(in + b, len, absmax.at(b / kCodeBlock), out + b);
    }
    return values;
}

}  // namespace

void bind_blockwise(py::module_& m) {
    m.attr("CODE_BLOCK") = kCodeBlock;
    m.def("quantize_blockwise", &quantize, py::arg("values"), py::arg("unsigned"),
          "(codes, absmax): 8-bit codes of float32 values in C order, one absmax per block of 256");
    m.def("dequantize_blockwise", &dequantize, py::arg("codes"), py::arg("absmax"), py::arg("unsigned"),
          "float32 values of 8-bit codes (C order) and their blocks' absmax");
}

}  // namespace fastoptim
