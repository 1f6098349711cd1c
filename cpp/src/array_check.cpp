#include "array_check.hpp"

#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace fastoptim {
namespace {

using npy = py::detail::npy_api;

constexpr int kLayoutFlags = ArrayRecord::kLayoutFlags;
static_assert(kLayoutFlags == (npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_F_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_ |
                               npy::NPY_ARRAY_WRITEABLE_), "NumPy's flag values");

bool native_byte_order(char order) {
    const std::uint16_t probe = 1;
    const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    return order == '=' || order == '|' || order == (little ? '<' : '>');
}

const char* type_name(int type_num) {
    return type_num == npy::NPY_DOUBLE_  ? "float64"
           : type_num == npy::NPY_FLOAT_ ? "float32"
           : type_num == kBfloat16Bits   ? "bfloat16 (ml_dtypes.bfloat16, or uint16 holding its bit patterns)"
           : type_num == kCodeBytes      ? "uint8"
           : type_num == kBfloat16Values ? "bfloat16 (ml_dtypes.bfloat16)"
                                         : "another dtype";
}

bool bare_uint16(PyObject* array) {
    return py::detail::array_descriptor_proxy(py::detail::array_proxy(array)->descr)->type_num == npy::NPY_USHORT_;
}

// ml_dtypes' bfloat16: a 2-byte user dtype of kind 'V' whose scalar type is named bfloat16.
bool is_ml_dtypes_bfloat16(const py::detail::PyArrayDescr_Proxy* descr) {
    if (descr->kind != 'V' || descr->type_num < 256 || descr->typeobj == nullptr) return false;
    const char* name = reinterpret_cast<PyTypeObject*>(descr->typeobj)->tp_name;
    const char* dot = std::strrchr(name, '.');
    if (std::strcmp(dot ? dot + 1 : name, "bfloat16") != 0) return false;
    return py::reinterpret_borrow<py::dtype>(reinterpret_cast<PyObject*>(const_cast<py::detail::PyArrayDescr_Proxy*>(descr)))
               .itemsize() == 2;  // reads the descriptor, runs no Python code
}

std::string dtype_text(PyObject* array) {
    return py::str(py::handle(py::detail::array_proxy(array)->descr)).cast<std::string>();
}

// float32 or float64 in this machine's byte order, bfloat16 patterns (kBfloat16Bits) or 8-bit
// codes (kCodeBytes): the only element types the kernels know; -1 for any other.
int kernel_type(PyObject* array) {
    const auto* descr = py::detail::array_descriptor_proxy(py::detail::array_proxy(array)->descr);
    if (!native_byte_order(descr->byteorder)) return -1;
    if (descr->type_num == npy::NPY_FLOAT_ || descr->type_num == npy::NPY_DOUBLE_) return descr->type_num;
    if (descr->type_num == npy::NPY_USHORT_ || is_ml_dtypes_bfloat16(descr)) return kBfloat16Bits;
    if (descr->type_num == kCodeBytes) return kCodeBytes;
    return -1;
}

}  // namespace

std::string shape_text(const py::ssize_t* dims, int ndim) {
    std::string s = "(";
    for (int k = 0; k < ndim; ++k) s += std::to_string(dims[k]) + (ndim == 1 ? "," : k + 1 < ndim ? ", " : "");
    return s + ")";
}

void* float_array_data(const py::array& a, const std::string& label, bool is_double, bool writable, py::ssize_t size,
                       bool aligned) {
    const auto& api = py::detail::npy_api::get();
    const py::dtype want = is_double ? py::dtype::of<double>() : py::dtype::of<float>();
    if (!a.dtype().equal(want))
        throw py::type_error(label + " must be a native-order " + (is_double ? "float64" : "float32") + " array");
    if (!(a.flags() & api.NPY_ARRAY_C_CONTIGUOUS_)) throw py::value_error(label + " must be C-contiguous");
    if (aligned && !(a.flags() & api.NPY_ARRAY_ALIGNED_)) throw py::value_error(label + " must be aligned to its elements");
    if (writable && !(a.flags() & api.NPY_ARRAY_WRITEABLE_)) throw py::value_error(label + " is read-only");
    if (size >= 0 && a.size() != size)
        throw py::value_error(label + " holds " + std::to_string(a.size()) + " elements, expected " + std::to_string(size));
    return const_cast<void*>(a.data());  // writable checked above
}

std::string array_problem(PyObject* obj, const ArrayNeeds& needs, const char* expected_dtype) {
    if (obj == nullptr || !npy::get().PyArray_Check_(obj))
        return std::string("must be a numpy.ndarray, got ") + (obj ? Py_TYPE(obj)->tp_name : "nothing");
    const auto* a = py::detail::array_proxy(obj);
    const int type = kernel_type(obj);
    const bool values = type == npy::NPY_FLOAT_ || type == npy::NPY_DOUBLE_;
    const bool bfloat16 = type == kBfloat16Bits && !bare_uint16(obj);
    if (needs.type_num == -1 && !values)
        return "has dtype " + dtype_text(obj) + "; fastoptim updates float32 and float64 arrays in native byte order";
    if (needs.type_num == kParamTypes && !values && !bfloat16)
        return "has dtype " + dtype_text(obj) + "; fastoptim updates float32, float64 and bfloat16 "
               "(ml_dtypes.bfloat16, from pip install \"fastoptim[bf16]\") arrays in native byte order" +
               (type == kBfloat16Bits ? " (bare uint16 bit patterns are not taken for parameters)" : "");
    if (needs.type_num == kBfloat16Values && !bfloat16)
        return "has dtype " + dtype_text(obj) + "; its parameter is " +
               (expected_dtype ? expected_dtype : type_name(needs.type_num));
    if (needs.type_num >= 0 && needs.type_num != kBfloat16Values && type != needs.type_num)
        return "has dtype " + dtype_text(obj) + "; its parameter is " +
               (expected_dtype ? expected_dtype : type_name(needs.type_num));
    if (needs.shape && !(a->nd == int(needs.shape->size()) && std::equal(needs.shape->begin(), needs.shape->end(), a->dimensions)))
        return "has shape " + shape_text(a->dimensions, a->nd) + "; its parameter has shape " +
               shape_text(needs.shape->data(), int(needs.shape->size()));
    const bool c = a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_, f = a->flags & npy::NPY_ARRAY_F_CONTIGUOUS_;
    if (!c && !f) return "is not contiguous (a strided view); fastoptim never copies an array, since an update would be lost";
    if ((needs.order == 'C' && !c) || (needs.order == 'F' && !f))
        return needs.order == 'C'
                   ? "is not in its parameter's memory order (C-contiguous expected): pass np.ascontiguousarray(g), "
                     "or allocate the gradient in its parameter's order (np.empty_like(param))"
                   : "is not in its parameter's memory order (Fortran-contiguous expected): pass np.asfortranarray(g), "
                     "or allocate the gradient in its parameter's order (np.empty_like(param))";
    if (needs.writeable && !(a->flags & npy::NPY_ARRAY_WRITEABLE_)) return "is read-only; the optimizer updates it in place";
    return {};
}

ArrayRecord::ArrayRecord(PyObject* array) {
    const auto* a = py::detail::array_proxy(array);
    data_ = a->data;
    shape_.assign(a->dimensions, a->dimensions + a->nd);
    flags_ = a->flags & kLayoutFlags;
    type_num_ = kernel_type(array);
    is_double_ = type_num_ == npy::NPY_DOUBLE_;
    bit_patterns_ = type_num_ == kBfloat16Bits && bare_uint16(array);
    dims_at_ = a->dimensions;
    const bool bits = type_num_ == kBfloat16Bits, codes = type_num_ == kCodeBytes;
    builtin_descr_ = is_double_ ? py::dtype::of<double>().ptr()
                     : bits     ? nullptr
                     : codes    ? py::dtype::of<std::uint8_t>().ptr()
                                : py::dtype::of<float>().ptr();
    order_ = (a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) ? 'C' : 'F';
    std::size_t count = 1;
    for (py::ssize_t d : shape_) count *= std::size_t(d);
    nbytes_ = count * (is_double_ ? sizeof(double) : bits ? sizeof(std::uint16_t) : codes ? 1 : sizeof(float));
}

bool ArrayRecord::same_dtype(PyObject* array) const {
    const PyObject* descr = py::detail::array_proxy(array)->descr;
    if (descr == builtin_descr_) return true;  // NumPy's own
    return kernel_type(array) == type_num_ && (!exact_bfloat16_ || !is_bfloat16() || bare_uint16(array) == bit_patterns_);
}

bool ArrayRecord::same_shape(PyObject* array) const {
    const auto* a = py::detail::array_proxy(array);
    return a->nd == int(shape_.size()) && std::equal(shape_.begin(), shape_.end(), a->dimensions);
}

bool ArrayRecord::fits_beside(PyObject* array) const {
    const int flags = py::detail::array_proxy(array)->flags;
    const int order_flag = order_ == 'C' ? npy::NPY_ARRAY_C_CONTIGUOUS_ : npy::NPY_ARRAY_F_CONTIGUOUS_;
    return (flags & order_flag) && same_shape(array) && same_dtype(array);
}

std::string ArrayRecord::change(PyObject* array) const {
    const auto* a = py::detail::array_proxy(array);
    if (!same_dtype(array))
        return "now has dtype " + dtype_text(array) + " (it was " + type_name(type_num_) + ")";
    if (!(a->nd == int(shape_.size()) && std::equal(shape_.begin(), shape_.end(), a->dimensions)))
        return "now has shape " + shape_text(a->dimensions, a->nd) + " (it was " +
               shape_text(shape_.data(), int(shape_.size())) + ")";
    if (a->data != data_) return "now has another buffer (resized with refcheck=False, or reloaded in place)";
    const int flags = a->flags & kLayoutFlags;
    if ((flags_ & npy::NPY_ARRAY_WRITEABLE_) && !(flags & npy::NPY_ARRAY_WRITEABLE_)) return "is read-only now";
    if ((flags_ & npy::NPY_ARRAY_ALIGNED_) && !(flags & npy::NPY_ARRAY_ALIGNED_)) return "is not aligned any more";
    return "is not laid out as it was (new strides)";
}

bool pin_buffers(PyObject* array, std::vector<py::object>& pins) {
    const auto& api = npy::get();
    const std::size_t first = pins.size();
    // The chain of bases first, held strongly and gathered without running Python code, then a
    // weak reference to each (which may run the garbage collector).
    for (PyObject* a = array; a != nullptr && api.PyArray_Check_(a); a = py::detail::array_proxy(a)->base)
        pins.push_back(py::reinterpret_borrow<py::object>(a));
    const std::size_t last = pins.size();
    bool all = true;
    for (std::size_t k = first; k < last; ++k) {
        PyObject* ref = PyWeakref_NewRef(pins[k].ptr(), nullptr);
        if (ref == nullptr) {  // a subclass without weak references: the checks before each step still hold
            PyErr_Clear();
            all = false;
            continue;
        }
        pins.push_back(py::reinterpret_steal<py::object>(ref));
    }
    return all;
}

void BufferGuard::guard(PyObject* array) {
    const auto& api = npy::get();
    for (PyObject* a = array; a != nullptr && api.PyArray_Check_(a); a = py::detail::array_proxy(a)->base) {
        auto* fields = py::detail::array_proxy(a);
        if (fields->flags & npy::NPY_ARRAY_OWNDATA_) {
            fields->flags &= ~npy::NPY_ARRAY_OWNDATA_;
            const Marked marked{a, fields->data};
            if (count_ < kInline) inline_[count_] = marked;
            else more_.push_back(marked);
            ++count_;
            return;
        }
    }
    // No array in the chain owns the buffer: it belongs to another object (bytes, a memory map,
    // which refuse to let go of an exported buffer), or another step has marked its owner and
    // may release it first. Weak references cover the second case.
    pin_buffers(array, pins_);
}

void BufferGuard::release() {
    for (std::size_t k = 0; k < count_; ++k) {
        const Marked& m = k < kInline ? inline_[k] : more_[k - kInline];
        auto* fields = py::detail::array_proxy(m.owner);
        // Still the buffer it owned: give it back. (Reloaded in place meanwhile, the array owns
        // its new buffer and NumPy did not free the old one: that one is left, never freed twice.)
        if (fields->data == m.data) fields->flags |= npy::NPY_ARRAY_OWNDATA_;
    }
    count_ = 0;
    more_.clear();
    pins_.clear();
}

}  // namespace fastoptim
