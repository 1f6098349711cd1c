// Both calls check every array they are given and run with the GIL held: no Python code runs
// between the first array check and the last store, so every row index is in range when it is used and
// every pointer is the one checked. The Python layer (_rows.py) checks how the arrays relate.
#include "row_binding.hpp"

#include <pybind11/numpy.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "array_check.hpp"
#include "fastoptim/runtime/settings.hpp"
#include "tensor_guards.hpp"

namespace fastoptim {
namespace {

namespace py = pybind11;

py::array as_array(py::handle h, const std::string& label) {
    if (!py::isinstance<py::array>(h)) throw py::type_error(label + " must be a numpy.ndarray");
    return py::reinterpret_borrow<py::array>(h);
}

// The row indices: int64, one dimension, C order; each in [0, table_rows). Copied into `owned`
// as they are checked: the kernels read the copy, which no other array of the call can share
// memory with. Returns whether the rows are distinct; with `distinct`, repeats are refused.
bool checked_rows(const py::array& rows, const std::string& label, index_t table_rows, bool distinct,
                  std::vector<std::int64_t>& owned) {
    if (!rows.dtype().equal(py::dtype::of<std::int64_t>()) || rows.ndim() != 1)
        throw py::type_error(label + " must be a one-dimensional int64 array");
    const auto& api = py::detail::npy_api::get();
    if (!(rows.flags() & api.NPY_ARRAY_C_CONTIGUOUS_) || !(rows.flags() & api.NPY_ARRAY_ALIGNED_))
        throw py::value_error(label + " must be C-contiguous and aligned");
    const auto* at = static_cast<const std::int64_t*>(rows.data());
    const index_t count = index_t(rows.size());
    owned.assign(at, at + count);
    for (index_t k = 0; k < count; ++k)
        if (owned[std::size_t(k)] < 0 || owned[std::size_t(k)] >= table_rows)
            throw py::value_error(label + "[" + std::to_string(k) + "] is " + std::to_string(owned[std::size_t(k)]) +
                                  ", out of range for a parameter of " + std::to_string(table_rows) + " rows");
    // A repeat: found with a bit per table row where the list names many of them, else by sorting
    // a copy (so a few rows of a huge table cost the rows, not the table).
    std::int64_t repeated = -1;
    if (count * 64 >= table_rows) {
        std::vector<std::uint64_t> seen(static_cast<std::size_t>(table_rows / 64 + 1), 0);
        for (const std::int64_t row : owned) {
            std::uint64_t& word = seen[static_cast<std::size_t>(row >> 6)];
            const std::uint64_t bit = std::uint64_t(1) << (row & 63);
            if ((word & bit) && repeated < 0) repeated = row;
            word |= bit;
        }
    } else {
        std::vector<std::int64_t> sorted(owned);
        std::sort(sorted.begin(), sorted.end());
        const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
        if (twice != sorted.end()) repeated = *twice;
    }
    if (repeated >= 0 && distinct)
        throw py::value_error(label + " names row " + std::to_string(repeated) +
                              " twice; rows must be distinct (coalesce_rows gives such rows)");
    return repeated < 0;
}

index_t elements_per_row(const py::array& a) {
    index_t cols = 1;
    for (py::ssize_t d = 1; d < a.ndim(); ++d) cols *= index_t(a.shape(d));
    return cols;
}

// The positions 0..count-1 ordered by their rows at[·] (each in [0, table_rows)), a row's
// positions in the order given: a stable radix sort, a byte of the row per pass.
std::vector<index_t> positions_by_row(const std::int64_t* at, index_t count, index_t table_rows) {
    std::vector<index_t> order(static_cast<std::size_t>(count)), next(order.size());
    std::iota(order.begin(), order.end(), index_t(0));
    for (int shift = 0; shift < 64 && (std::uint64_t(table_rows - 1) >> shift) != 0; shift += 8) {
        std::array<index_t, 257> starts{};
        for (index_t k = 0; k < count; ++k) ++starts[((std::uint64_t(at[k]) >> shift) & 255) + 1];
        for (int b = 0; b < 256; ++b) starts[std::size_t(b + 1)] += starts[std::size_t(b)];
        for (const index_t k : order) next[std::size_t(starts[(std::uint64_t(at[k]) >> shift) & 255]++)] = k;
        order.swap(next);
    }
    return order;
}

// The values' data, checked: `count` rows of `cols` elements of T, C order, aligned.
template <class T>
const T* checked_values(const py::array& values, const std::string& label, index_t count, index_t cols) {
    if (values.ndim() < 1 || index_t(values.shape(0)) != count)
        throw py::value_error(label + ".values must have one row per index");
    return static_cast<const T*>(float_array_data(values, label + ".values", std::is_same_v<T, double>, false,
                                                  count * cols, true));
}

template <class T>
py::tuple coalesce(const py::array& values, const std::string& label, index_t count, index_t cols,
                   const std::int64_t* at, index_t table_rows) {
    // The order and the rows are copied before the new arrays are allocated: allocating may run
    // Python code (a garbage collection), which could change the caller's arrays.
    const std::vector<index_t> order = positions_by_row(at, count, table_rows);
    std::vector<std::int64_t> sorted(static_cast<std::size_t>(count));
    for (index_t k = 0; k < count; ++k) sorted[std::size_t(k)] = at[order[std::size_t(k)]];
    index_t unique = 0;
    for (index_t k = 0; k < count; ++k) unique += k == 0 || sorted[std::size_t(k)] != sorted[std::size_t(k - 1)];
    std::vector<py::ssize_t> shape(values.shape(), values.shape() + values.ndim());
    shape[0] = unique;
    py::array_t<std::int64_t> rows(unique);
    py::array_t<T> sums(shape);
    const T* in = checked_values<T>(values, label, count, cols);  // again, after any Python code
    std::int64_t* row = rows.mutable_data();
    T* out = sums.mutable_data();
    index_t u = -1;
    for (index_t k = 0; k < count; ++k) {
        const T* from = in + order[std::size_t(k)] * cols;
        if (k == 0 || sorted[std::size_t(k)] != sorted[std::size_t(k - 1)]) {  // a new row: copied, then its repeats added in order
            row[++u] = sorted[std::size_t(k)];
            std::copy(from, from + cols, out + u * cols);
        } else {
            for (index_t j = 0; j < cols; ++j) out[u * cols + j] += from[j];
        }
    }
    return py::make_tuple(rows, sums);
}

py::tuple coalesce_rows(const py::array& indices, const py::array& values, index_t table_rows,
                        const std::string& label) {
    std::vector<std::int64_t> owned;
    const bool distinct = checked_rows(indices, label + ".indices", table_rows, false, owned);
    const std::int64_t* at = owned.data();
    const bool is_double = values.dtype().equal(py::dtype::of<double>());
    const index_t count = index_t(indices.size()), cols = elements_per_row(values);
    if (is_double) checked_values<double>(values, label, count, cols);
    else checked_values<float>(values, label, count, cols);
    if (distinct) return py::make_tuple(indices, values);  // coalesced already, in any order: no copy
    return is_double ? coalesce<double>(values, label, count, cols, at, table_rows)
                     : coalesce<float>(values, label, count, cols, at, table_rows);
}

// A table's numbers, read before any array is checked: exact tuples and floats (or ints), which no
// user's class can hook.
struct TableNumbers {
    double mult = 1;
    std::vector<double> coeffs;
};

double number(py::handle h, const std::string& label) {
    if (!PyFloat_Check(h.ptr()) && !PyLong_Check(h.ptr())) throw py::type_error(label + " must be a float");
    const double x = PyFloat_AsDouble(h.ptr());  // a float's value or an int's, no Python code
    if (x == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return x;
}

TableNumbers read_numbers(RowRule rule, const py::tuple& entry, const std::string& label) {
    TableNumbers numbers;
    numbers.mult = number(entry[5], label + " mult");
    const py::handle coeffs = entry[6];
    if (!PyTuple_CheckExact(coeffs.ptr())) throw py::type_error(label + " coefficients must be a tuple of floats");
    const std::size_t expected = rule == RowRule::sparse_adam ? 4 : 3;
    if (std::size_t(PyTuple_GET_SIZE(coeffs.ptr())) != expected)
        throw py::value_error(label + " coefficients: " + std::to_string(expected) + " expected, got " +
                              std::to_string(PyTuple_GET_SIZE(coeffs.ptr())));
    for (std::size_t c = 0; c < expected; ++c)
        numbers.coeffs.push_back(number(PyTuple_GET_ITEM(coeffs.ptr(), Py_ssize_t(c)), label + " coefficient"));
    return numbers;
}

template <class T>
RowTable<T> read_table(RowRule rule, const py::tuple& entry, const TableNumbers& numbers, const std::string& label,
                       bool is_double, std::vector<std::int64_t>& owned_rows) {
    const py::array param = as_array(entry[0], label + " param");
    RowTable<T> t;
    t.param = static_cast<T*>(float_array_data(param, label + " param", is_double, true, -1, true));
    const index_t table_rows = param.ndim() >= 1 ? index_t(param.shape(0)) : 1;
    t.cols = elements_per_row(param);
    const index_t size = index_t(param.size());
    const bool adam = rule == RowRule::sparse_adam;
    t.first = static_cast<T*>(float_array_data(as_array(entry[1], label + " state"), label + " state", is_double,
                                               true, adam ? size : table_rows, true));
    if (adam)
        t.second = static_cast<T*>(float_array_data(as_array(entry[2], label + " second state"),
                                                    label + " second state", is_double, true, size, true));
    else if (!entry[2].is_none())
        throw py::value_error(label + ": row-wise Adagrad has one state array");
    t.count = table_rows;
    if (!entry[4].is_none()) {
        const py::array rows = as_array(entry[4], label + " rows");
        checked_rows(rows, label + " rows", table_rows, true, owned_rows);
        t.rows = owned_rows.data();
        t.count = index_t(rows.size());
    }
    t.values = static_cast<const T*>(float_array_data(as_array(entry[3], label + " values"), label + " values",
                                                      is_double, false, t.count * t.cols, true));
    t.mult = narrow<T>(numbers.mult);
    const std::vector<double>& coeffs = numbers.coeffs;
    if (adam)
        t.adam = {narrow<T>(coeffs[0]), narrow<T>(coeffs[1]), narrow<T>(coeffs[2]), narrow<T>(coeffs[3])};
    else
        t.adagrad = {narrow<T>(coeffs[0]), narrow<T>(coeffs[1]), narrow<T>(coeffs[2])};
    return t;
}

void row_step(const std::string& rule_name, const py::list& tables, const py::list& guards) {
    RowRule rule;
    if (rule_name == "sparse_adam") rule = RowRule::sparse_adam;
    else if (rule_name == "rowwise_adagrad") rule = RowRule::rowwise_adagrad;
    else throw py::value_error("row_step: rule must be 'sparse_adam' or 'rowwise_adagrad'");
    const auto items = py::reinterpret_steal<py::tuple>(PySequence_Tuple(tables.ptr()));  // holds every entry
    if (!items) throw py::error_already_set();
    // First every table's shape and numbers, then the arrays: from the first array checked to the
    // kernels' return, no Python code runs.
    std::vector<TableNumbers> numbers;
    for (std::size_t k = 0; k < items.size(); ++k) {
        const std::string label = "tables[" + std::to_string(k) + "]";
        PyObject* item = PyTuple_GET_ITEM(items.ptr(), Py_ssize_t(k));
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 7)
            throw py::type_error(label + " must be a tuple (param, state, state or None, values, rows or None, "
                                         "mult, coefficients)");
        numbers.push_back(read_numbers(rule, py::reinterpret_borrow<py::tuple>(item), label));
    }
    const std::vector<TensorGuard> checked = read_tensor_guards(guards);
    std::vector<RowTable<float>> f32;
    std::vector<RowTable<double>> f64;
    std::vector<std::vector<std::int64_t>> owned_rows(items.size());  // each table's rows, copied
    for (std::size_t k = 0; k < items.size(); ++k) {
        const std::string label = "tables[" + std::to_string(k) + "]";
        const auto entry = py::reinterpret_borrow<py::tuple>(items[k]);
        const py::array param = as_array(entry[0], label + " param");
        if (param.dtype().equal(py::dtype::of<double>()))
            f64.push_back(read_table<double>(rule, entry, numbers[k], label, true, owned_rows[k]));
        else
            f32.push_back(read_table<float>(rule, entry, numbers[k], label, false, owned_rows[k]));
    }
    // fastoptim.torch's views, after the last call that may run Python code (the array checks may)
    check_tensor_guards(checked);
    current_target().rows(RowsRequest{rule, f32.data(), index_t(f32.size()), f64.data(), index_t(f64.size()),
                                      num_threads()});
}

}  // namespace

void bind_row_passes(py::module_& m) {
    m.def("coalesce_rows", &coalesce_rows, py::arg("indices"), py::arg("values"), py::arg("table_rows"),
          py::arg("label") = "grad",
          "(rows, sums): indices and values themselves when the indices are distinct, else the distinct indices in "
          "increasing order and each one's values summed in the order given; every index checked against table_rows");
    m.def("row_step", &row_step, py::arg("rule"), py::arg("tables"), py::arg("guards") = py::list(),
          "one step of 'sparse_adam' or 'rowwise_adagrad' over every table: (param, state, state or None, values, "
          "rows or None, mult, coefficients); guards: tensor_guards.hpp's, checked after every table is read");
}

}  // namespace fastoptim
