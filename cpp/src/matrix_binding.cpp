// Each call checks every array it is given (type, dtype, C order, size, writeability) and runs
// its pass with the GIL held: no Python code runs between the checks and the last store, so the
// pointers it writes through are the ones it checked. The arrays are the optimizer's own or the
// caller's, for one pass over one parameter: the Python layer (_per_array.py) checks how they
// relate (gradients like their parameters, nothing shared). `guards` (fastoptim.torch's, for the
// views of the tensors the pass touches) are re-checked after the arrays, just before the pass.
#include "matrix_binding.hpp"

#include <pybind11/numpy.h>

#include <string>
#include <utility>

#include "array_check.hpp"
#include "fastoptim/runtime/settings.hpp"
#include "tensor_guards.hpp"

namespace fastoptim {
namespace {

namespace py = pybind11;

bool is_double(const py::array& param, const char* label) {
    if (param.dtype().equal(py::dtype::of<double>())) return true;
    if (param.dtype().equal(py::dtype::of<float>())) return false;
    throw py::type_error(std::string(label) + " must be a native-order float32 or float64 array");
}

// One array's pass: the parameter (or the array in its place) written, the gradient read.
MatrixRequest elementwise(const py::array& param, const py::array& grad, double mult,
                          const char* param_label = "param", const char* grad_label = "grad") {
    MatrixRequest r{};
    r.is_double = is_double(param, param_label);
    r.size = index_t(param.size());
    r.param = float_array_data(param, param_label, r.is_double, true, -1);
    r.grad = float_array_data(grad, grad_label, r.is_double, false, r.size);
    r.mult = mult;
    r.threads = num_threads();
    return r;
}

// A parameter of ndim ≥ 2 as batch × rows × cols.
MatrixRequest factored(const py::array& param, const py::array& grad, double mult) {
    if (param.ndim() < 2) throw py::value_error("a factored parameter has at least 2 dimensions");
    MatrixRequest r = elementwise(param, grad, mult);
    r.cols = index_t(param.shape(param.ndim() - 1));
    r.rows = index_t(param.shape(param.ndim() - 2));
    r.batch = 1;
    for (py::ssize_t d = 0; d + 2 < param.ndim(); ++d) r.batch *= index_t(param.shape(d));
    return r;
}

void with_factors(MatrixRequest& r, const py::array& row_inv, const py::array& col_inv, double inv_eps) {
    r.row_inv = float_array_data(row_inv, "row_inv", r.is_double, false, r.batch * r.rows, true);
    r.col_inv = float_array_data(col_inv, "col_inv", r.is_double, false, r.batch * r.cols, true);
    r.inv_eps = inv_eps;
}

PassSums run(MatrixRequest& r, MatrixPass pass, const std::vector<TensorGuard>& guards) {
    check_tensor_guards(guards);  // after the last call that may run Python code (the array checks)
    r.pass = pass;
    return current_target().matrix(r);
}

}  // namespace

void bind_matrix_passes(py::module_& m) {
    m.def("factored_moments", [](const py::array& param, const py::array& grad, double mult, const py::array& rows_sq,
                                 const py::array& cols_sq, const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = factored(param, grad, mult);
        r.rows_sq = static_cast<double*>(float_array_data(rows_sq, "rows_sq", true, true, r.batch * r.rows, true));
        r.cols_sq = static_cast<double*>(float_array_data(cols_sq, "cols_sq", true, true, r.batch * r.cols, true));
        return run(r, MatrixPass::factored_moments, checked).param_sq;
    }, py::arg("param"), py::arg("grad"), py::arg("mult"), py::arg("rows_sq"), py::arg("cols_sq"),
       py::arg("guards") = py::list(),
       "Σp² of a parameter of ndim ≥ 2; each row's and column's Σ(g·mult)² (of its last two dimensions) into "
       "rows_sq and cols_sq (float64)");
    m.def("factored_update_sq", [](const py::array& param, const py::array& grad, double mult,
                                   const py::array& row_inv, const py::array& col_inv, double inv_eps,
                                   const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = factored(param, grad, mult);
        with_factors(r, row_inv, col_inv, inv_eps);
        return run(r, MatrixPass::factored_update_sq, checked).update_sq;
    }, py::arg("param"), py::arg("grad"), py::arg("mult"), py::arg("row_inv"), py::arg("col_inv"), py::arg("inv_eps"),
       py::arg("guards") = py::list(),
       "Σu², u = g·mult·min(inv_eps, row_inv_i·col_inv_j)");
    m.def("factored_apply", [](const py::array& param, const py::array& grad, double mult, const py::array& row_inv,
                               const py::array& col_inv, double inv_eps, double decay, double step,
                               const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = factored(param, grad, mult);
        with_factors(r, row_inv, col_inv, inv_eps);
        r.decay = decay;
        r.step = step;
        run(r, MatrixPass::factored_apply, checked);
    }, py::arg("param"), py::arg("grad"), py::arg("mult"), py::arg("row_inv"), py::arg("col_inv"), py::arg("inv_eps"),
       py::arg("decay"), py::arg("step"), py::arg("guards") = py::list(),
       "p ← p·decay − step·u");
    m.def("variance_moments", [](const py::array& param, const py::array& grad, double mult, const py::array& variance,
                                 double weight, double eps_sq, const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = elementwise(param, grad, mult);
        r.state = float_array_data(variance, "variance", r.is_double, true, r.size);
        r.weight = weight;
        r.eps_sq = eps_sq;
        const PassSums sums = run(r, MatrixPass::variance_moments, checked);
        return std::make_pair(sums.param_sq, sums.update_sq);
    }, py::arg("param"), py::arg("grad"), py::arg("mult"), py::arg("variance"), py::arg("weight"), py::arg("eps_sq"),
       py::arg("guards") = py::list(),
       "v ← lerp(v, (g·mult)², weight); returns (Σp², Σu²), u = g·mult / sqrt(max(v, eps_sq))");
    m.def("variance_apply", [](const py::array& param, const py::array& grad, double mult, const py::array& variance,
                               double eps_sq, double decay, double step, const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = elementwise(param, grad, mult);
        r.state = float_array_data(variance, "variance", r.is_double, false, r.size);
        r.eps_sq = eps_sq;
        r.decay = decay;
        r.step = step;
        run(r, MatrixPass::variance_apply, checked);
    }, py::arg("param"), py::arg("grad"), py::arg("mult"), py::arg("variance"), py::arg("eps_sq"), py::arg("decay"),
       py::arg("step"), py::arg("guards") = py::list(),
       "p ← p·decay − step·u");
    m.def("muon_momentum", [](const py::array& grad, double mult, const py::array& buffer, const py::array& out,
                              double momentum, bool nesterov,
                              const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = elementwise(buffer, grad, mult, "buffer");  // the buffer stands where a parameter would
        r.state = r.param;
        r.param = nullptr;
        r.out = float_array_data(out, "out", r.is_double, true, r.size);
        r.momentum = momentum;
        r.nesterov = nesterov;
        return run(r, MatrixPass::muon_momentum, checked).update_sq;
    }, py::arg("grad"), py::arg("mult"), py::arg("buffer"), py::arg("out"), py::arg("momentum"), py::arg("nesterov"),
       py::arg("guards") = py::list(),
       "buffer ← lerp(buffer, g·mult, 1 − momentum); out ← lerp(g·mult, buffer, momentum) (nesterov) or buffer; "
       "returns Σout²");
    m.def("decay_and_subtract", [](const py::array& param, const py::array& x, double decay, double step,
                                   const py::list& guards) {
        const std::vector<TensorGuard> checked = read_tensor_guards(guards);
        MatrixRequest r = elementwise(param, x, 1.0, "param", "x");
        r.out = const_cast<void*>(r.grad);
        r.decay = decay;
        r.step = step;
        run(r, MatrixPass::decay_and_subtract, checked);
    }, py::arg("param"), py::arg("x"), py::arg("decay"), py::arg("step"), py::arg("guards") = py::list(),
       "p ← p·decay − step·x");
}

}  // namespace fastoptim
