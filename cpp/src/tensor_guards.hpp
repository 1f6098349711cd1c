// The memory of torch tensors viewed as NumPy arrays (fastoptim.torch), re-checked by a native
// call before it writes through the views. torch lets Python code move or free a tensor's memory
// while a view lives (p.data = ..., set_()); a guard holds the tensor and the storage it had, so
// the storage stays alive, and the check asks torch where the tensor starts now and what the
// storage holds. The caller keeps the GIL from the check to its last write.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

namespace fastoptim {

struct TensorGuard {
    pybind11::object label, tensor, storage;
    long long address, span;  // where the view starts, and its bytes
};

// (label, tensor, storage, address, span) tuples, read once (TypeError if malformed).
std::vector<TensorGuard> read_tensor_guards(pybind11::handle guards);

// ValueError naming the first guard whose tensor no longer starts at `address` or whose storage
// no longer holds the `span` bytes from there. The calls are torch's C methods: no Python
// bytecode runs (fastoptim.torch refuses tensor subclasses that override __torch_function__).
void check_tensor_guards(const std::vector<TensorGuard>& guards);

}  // namespace fastoptim
