// The memory of torch tensors viewed as NumPy arrays (fastoptim.torch), re-checked by a native
// call before it reads or writes through the views. torch lets Python code repoint a tensor while
// a view lives (p.data = ..., set_()), which can free the memory the view points at, and move a
// storage's memory (share_memory_() frees the old buffer); the check asks torch whether the tensor
// still starts where the view does. A storage torch has not pinned (it makes the storage of a
// tensor NumPy views non-resizable) is also asked whether it still holds the view. The caller
// keeps the GIL from the check to its last write.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

namespace fastoptim {

struct TensorGuard {
    pybind11::object label, tensor, storage;  // storage: None where torch pinned it
    long long address, span;  // where the view starts, and its bytes
};

// A Python name made once (callers keep it in a function-local static): attribute and method
// lookups by it hash nothing and make no string per call.
PyObject* interned(const char* text);

// (label, tensor, storage, address, span) tuples, read once (TypeError if malformed).
std::vector<TensorGuard> read_tensor_guards(pybind11::handle guards);

// ValueError naming the first guard whose tensor no longer starts at `address` or whose storage
// (where given) no longer holds the `span` bytes from there. The calls are torch's C methods, made
// with torch's __torch_function__ handling switched off while a TorchFunctionMode is active: no
// Python bytecode runs, not even a mode's (fastoptim.torch also refuses tensor subclasses that
// override __torch_function__).
void check_tensor_guards(const std::vector<TensorGuard>& guards);

}  // namespace fastoptim
