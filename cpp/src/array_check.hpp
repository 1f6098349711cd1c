// What the plan knows of every array the kernels touch, and the checks that keep its pointers
// honest. The arrays are the user's: between two steps Python code may give one a new shape
// or dtype, make it read-only or free its buffer (resize(refcheck=False)). So a pointer taken
// when an array was validated is used only after `ArrayRecord::matches` has found the array
// unchanged since, in the same stretch of C++ in which the kernels then run.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace fastoptim {

namespace py = pybind11;

// The element type of bfloat16 state: ml_dtypes.bfloat16, or uint16 holding its bit patterns
// (NumPy has no bfloat16 of its own). Not a NumPy type number: no NumPy type has it.
inline constexpr int kBfloat16Bits = 1 << 20;
// The element type of 8-bit state: uint8 codes (int8_state.hpp).
inline constexpr int kCodeBytes = py::detail::npy_api::NPY_UBYTE_;
// What ArrayNeeds may ask for besides one type: ml_dtypes.bfloat16 alone (a bfloat16 parameter's
// gradient: bare uint16 is no number type), and any parameter type: float32, float64 or that.
inline constexpr int kBfloat16Values = 1 << 21;
inline constexpr int kParamTypes = -2;

// What an array must be for the kernels to use it.
struct ArrayNeeds {
    int type_num = -1;  // NPY_FLOAT, NPY_DOUBLE, kBfloat16Bits, kCodeBytes or kBfloat16Values; -1: float32 or
                        // float64; kParamTypes: those or ml_dtypes.bfloat16
    const std::vector<py::ssize_t>* shape = nullptr;  // nullptr: any
    char order = 0;                               // 'C' or 'F': contiguous in that order; 0: either
    bool writeable = false;
};

// Why `obj` cannot be used as `needs` says, as the end of a sentence that starts with the
// array's label ("has dtype int8; its parameter is float32"), or "" if it can. Runs no Python
// code unless it finds a problem (the message formats the dtype).
std::string array_problem(PyObject* obj, const ArrayNeeds& needs, const char* expected_dtype = nullptr);

// An array as it was validated: the fields a pointer into it depends on.
class ArrayRecord {
public:
    // The flags a pointer into the array depends on: contiguity, alignment and writeability.
    static constexpr int kLayoutFlags = 0x0001 | 0x0002 | 0x0100 | 0x0400;

    ArrayRecord() = default;
    explicit ArrayRecord(PyObject* array);

    // Still the array that was validated: same buffer, shape, dtype and flags. Plain loads and
    // compares, no Python code: the check before every step, inline.
    bool matches(PyObject* array) const {
        const auto* a = py::detail::array_proxy(array);
        if (a->data != data_ || (a->flags & kLayoutFlags) != flags_ || a->nd != int(shape_.size())) return false;
        // The header is one or two cache lines, the dimensions another, and after a sweep all are
        // cold: the dimensions are read only where they may have changed size. A pinned array
        // cannot be resized, and a new shape in place comes with a new dimensions block; the
        // same block may then be reused, which can hide an equal-sized reshape, never a resize.
        if (a->dimensions != dims_at_ || !pinned_) {
            const py::ssize_t* dims = shape_.data();
            for (int k = 0; k < a->nd; ++k)
                if (a->dimensions[k] != dims[k]) return false;
        }
        return a->descr == builtin_descr_ || same_dtype(array);
    }
    // NumPy refuses to resize it (pin_buffers took every weak reference it needs).
    void set_pinned() { pinned_ = true; }
    // A parameter's record: bfloat16 is ml_dtypes' alone, for it and beside it (its gradients);
    // bfloat16 state may be either kind.
    void set_exact_bfloat16() { exact_bfloat16_ = true; }
    // Whether `array` (a NumPy array) can be read beside this one, as its gradient: same dtype,
    // shape and memory order. The common case in a few compares; array_problem says why not.
    bool fits_beside(PyObject* array) const;
    // What changed, for the error message (after matches() returned false).
    std::string change(PyObject* array) const;

    bool same_dtype(PyObject* array) const;
    bool same_shape(PyObject* array) const;

    char* data() const { return data_; }
    std::size_t nbytes() const { return nbytes_; }
    const std::vector<py::ssize_t>& shape() const { return shape_; }
    bool is_double() const { return is_double_; }
    bool is_bfloat16() const { return type_num_ == kBfloat16Bits; }
    std::size_t itemsize() const { return is_double_ ? 8 : is_bfloat16() ? 2 : type_num_ == kCodeBytes ? 1 : 4; }
    std::size_t size() const { return nbytes_ / itemsize(); }
    char order() const { return order_; }

private:
    char* data_ = nullptr;
    std::vector<py::ssize_t> shape_;
    int flags_ = 0;  // contiguity, alignment and writeability
    int type_num_ = 0;
    PyObject* builtin_descr_ = nullptr;  // NumPy's own descriptor of type_num_, which lives as long as NumPy
                                         // (null for ml_dtypes' bfloat16: compared by type each time)
    const void* dims_at_ = nullptr;      // where the array kept its dimensions (compared, never read)
    bool pinned_ = false;
    bool is_double_ = false;
    bool bit_patterns_ = false;  // bfloat16 as bare uint16
    bool exact_bfloat16_ = false;  // bare uint16 and ml_dtypes' bfloat16 are not the same dtype
    char order_ = 'C';
    std::size_t nbytes_ = 0;
};

// Weak references to `array` and to every array it views: NumPy refuses to resize an array
// that has a weak reference, even with refcheck=False, so the buffer cannot be freed while the
// references are held. For arrays a plan keeps (taken once, when it is built). Appends to
// `pins`; may run the garbage collector, so take pins before the checks, never after. False if
// some array in the chain takes no weak references (then it may still be resized).
bool pin_buffers(PyObject* array, std::vector<py::object>& pins);

// Keeps the buffers of arrays that come and go with each step (gradients) while the kernels
// run without the GIL, for a few loads and stores per array rather than an allocation: the
// array that owns each buffer is marked as not owning it, so NumPy refuses to resize it and a
// __setstate__ leaves the old buffer alone, and is marked back by release(). Mark and release
// with the GIL held; the caller holds a reference to every array until release().
class BufferGuard {
public:
    BufferGuard() = default;
    BufferGuard(const BufferGuard&) = delete;
    BufferGuard& operator=(const BufferGuard&) = delete;
    ~BufferGuard() { release(); }

    void guard(PyObject* array);  // may fall back on pin_buffers: call before the checks
    void release();

private:
    struct Marked {
        PyObject* owner;
        char* data;
    };
    static constexpr std::size_t kInline = 8;  // a probe's arrays, without allocating
    Marked inline_[kInline] = {};
    std::size_t count_ = 0;
    std::vector<Marked> more_;
    std::vector<py::object> pins_;  // where the owner was already marked (another step reads it too)
};

std::string shape_text(const py::ssize_t* dims, int ndim);

// The data of `a` for one pass that holds the GIL from this check to its last store: float64 if
// `is_double`, else float32, C-contiguous, of `size` elements (any when -1), writable if asked,
// aligned to its elements if asked (read through plain pointers). TypeError/ValueError naming `label`.
// A double as T, as torch casts a Python float: finite values beyond float's range become ±inf
// (a plain conversion would be undefined behaviour).
template <class T>
inline T narrow(double x) {
    if constexpr (std::is_same_v<T, float>) {
        if (std::isfinite(x) && std::fabs(x) > double(std::numeric_limits<float>::max()))
            return std::copysign(std::numeric_limits<float>::infinity(), float(x > 0 ? 1 : -1));
    }
    return T(x);
}

void* float_array_data(const py::array& a, const std::string& label, bool is_double, bool writable, py::ssize_t size,
                       bool aligned = false);

}  // namespace fastoptim
