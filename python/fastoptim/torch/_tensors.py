"""Zero-copy NumPy views of torch CPU tensors, and the checks that keep them valid.

A view of a tensor points at its storage's memory; torch lets Python code repoint the tensor
(``p.data = ...``, ``p.set_()``) or move its storage's memory (``p.share_memory_()`` frees the
old buffer) while the view lives; resizing a storage that NumPy views torch itself refuses. So
every view the kernels read or write is re-checked before each step, in the native call itself
(``Plan.set_guards``): the tensor still starts where the view does. The steps run with the GIL
held (``Optimizer._release_gil``), so no Python code runs between the check and the last write.

A dense tensor in any memory order (``channels_last`` included) is viewed with its axes ordered
by decreasing stride, which makes the view C-contiguous: the rules are element-wise (or reduce
over the whole array), so the order the kernels visit the elements in is theirs to choose, and
the state, the gradient and the EMA take the same order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .._per_array import Guard

__all__ = ["NUMPY_VIEWED", "Bound", "Guard", "array_of", "bfloat16_view", "grad_view", "param_view", "tensor_of"]

_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 tensors are stepped through ml_dtypes.bfloat16 views: pip install "
                        "\"fastoptim[bf16]\"") from None
    dtype: np.dtype = np.dtype(ml_dtypes.bfloat16)
    return dtype


def _order(tensor: torch.Tensor) -> tuple[int, ...]:
    """The axes by decreasing stride (ties: as given), which makes a dense tensor's view C-contiguous."""
    strides = tensor.stride()
    return tuple(sorted(range(tensor.dim()), key=lambda axis: -strides[axis]))


def _is_dense(tensor: torch.Tensor) -> bool:
    """Whether the elements fill a block of memory, each once: in increasing stride, each axis's
    stride is the product of the sizes before it (axes of size 1 aside)."""
    if tensor.numel() == 0:
        return True
    expected = 1
    for size, stride in sorted((p for p in zip(tensor.shape, tensor.stride()) if p[0] != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def _strides_that_matter(shape: torch.Size, strides: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of the axes longer than 1: two dense tensors of one shape that agree on them
    hold their elements in the same order (torch's autograd promises no more for a gradient)."""
    return tuple(stride for size, stride in zip(shape, strides) if size > 1)


def _check_dense(label: str, tensor: torch.Tensor, what: str) -> None:
    """A CPU tensor, strided, dense and non-overlapping, of a dtype fastoptim updates."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{label} must be a torch.Tensor, got {type(tensor).__name__}")
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) and torch.overrides.has_torch_function((tensor,)):
        # its methods may run Python code, which the native re-check of its memory must not
        raise TypeError(f"{label} is a {type(tensor).__name__}, a tensor subclass that overrides __torch_function__; "
                        "fastoptim.torch steps plain tensors and Parameters")
    if tensor.device.type != "cpu":
        raise TypeError(f"{label} is on {tensor.device}; fastoptim.torch steps CPU tensors (for {tensor.device} "
                        f"tensors use torch.optim, e.g. with fused=True)")
    if tensor.layout != torch.strided:
        raise TypeError(f"{label} has layout {tensor.layout}; {what} must be dense (strided) tensors"
                        + (" (SparseAdam takes sparse COO gradients)" if tensor.layout == torch.sparse_coo else ""))
    if tensor.dtype not in _DTYPES and tensor.dtype != torch.bfloat16:
        raise TypeError(f"{label} has dtype {tensor.dtype}; fastoptim updates float32, float64 and bfloat16 tensors")
    if tensor.is_conj() or tensor.is_neg():
        raise TypeError(f"{label} is a lazily conjugated or negated view; resolve it first")
    if not _is_dense(tensor):
        raise ValueError(f"{label} is not dense (a strided or overlapping view, strides {tensor.stride()} for shape "
                         f"{tuple(tensor.shape)}); fastoptim never copies it, since the update would be lost: pass "
                         "the tensor it views")


def _numpy(tensor: torch.Tensor, order: tuple[int, ...]) -> np.ndarray:
    """The tensor's memory as a C-contiguous NumPy view, its axes in `order`."""
    plain = tensor.detach()
    if plain.dtype == torch.bfloat16:
        array = plain.view(torch.int16).numpy().view(_bfloat16())
    else:
        array = plain.numpy()
    return array.transpose(order) if order != tuple(range(array.ndim)) else array




class Bound(NamedTuple):
    """A tensor, its NumPy view, and the guard a step re-checks before writing through the view."""

    tensor: torch.Tensor
    view: np.ndarray
    address: int
    shape: torch.Size
    strides: tuple[int, ...]
    dtype: torch.dtype
    # A parameter's storage, held: after p.data = ... or set_() its memory lives on, so the views
    # Python code reads outside a step (an EMA restarted from the parameters) stay readable until
    # their check. None for a gradient, read only by the native steps, after their check.
    storage: Any
    # (label, tensor, storage or None, address, span): the native re-check (tensor_guards.hpp).
    # The storage is left out where torch pinned it (tensor_to_numpy makes the storage of a tensor
    # NumPy views non-resizable): then the check is one data_ptr() call.
    guard: Guard


def _numpy_pins_storage() -> bool:
    """Whether this torch makes a storage non-resizable when NumPy views it (2.13 does)."""
    probe = torch.zeros(1)
    probe.numpy()
    return not probe.untyped_storage().resizable()


_PINNED = _numpy_pins_storage()
# The dtypes whose gradient view grad_view's short test makes with numpy() alone (the native step
# makes it so too, cpp/src/torch_step.cpp); bfloat16 takes an int16 view first (bfloat16_view).
NUMPY_VIEWED = (torch.float32, torch.float64) if _PINNED else ()


def bfloat16_view() -> tuple[torch.dtype, torch.dtype, np.dtype] | None:
    """How the native step views a new bfloat16 gradient, as _numpy does: (torch.bfloat16, the
    int16 its bits are read as, ml_dtypes' bfloat16); None without ml_dtypes or torch's pinning."""
    try:
        return (torch.bfloat16, torch.int16, _bfloat16()) if _PINNED else None
    except TypeError:  # no ml_dtypes: no bfloat16 parameter either
        return None


def bind(label: str, tensor: torch.Tensor, order: tuple[int, ...], hold: bool = True) -> Bound:
    """A view of a checked tensor with its axes in `order` (`hold`: keep its storage too)."""
    view = _numpy(tensor, order)
    address = tensor.data_ptr()
    storage = tensor.untyped_storage() if hold or not _PINNED else None
    checked = None if _PINNED or storage is None or not storage.resizable() else storage
    guard = (label, tensor, checked, address, tensor.numel() * tensor.element_size())
    return Bound(tensor, view, address, tensor.shape, tensor.stride(), tensor.dtype, storage if hold else None,
                 guard)


def param_view(label: str, tensor: Any) -> tuple[Bound, tuple[int, ...]]:
    """A parameter's view and its axis order, or TypeError/ValueError naming `label`."""
    _check_dense(label, tensor, "parameters")
    if tensor.is_inference():
        raise ValueError(f"{label} is an inference tensor, which torch lets nothing update in place")
    order = _order(tensor)
    return bind(label, tensor, order), order


def grad_view(label: str, grad: Any, param: Bound, order: tuple[int, ...]) -> Bound:
    """A gradient's view in its parameter's order, or TypeError/ValueError naming `label`. The
    usual gradient (a plain CPU tensor laid out as its parameter) passes a short test and takes
    its parameter's facts: a loop that sets .grad to None views every gradient at every step."""
    if (type(grad) is torch.Tensor and grad.is_cpu and grad.layout is torch.strided  # noqa: E721
            and grad.dtype is param.dtype and grad.shape == param.shape and grad.stride() == param.strides
            and not grad.requires_grad and not grad.is_neg() and _PINNED):
        if param.dtype is torch.bfloat16:
            view = _numpy(grad, order)
        else:
            array = grad.numpy()
            view = array.transpose(order) if order != tuple(range(array.ndim)) else array
        address = grad.data_ptr()
        return Bound(grad, view, address, param.shape, param.strides, param.dtype, None,
                     (label, grad, None, address, param.guard[4]))
    _check_dense(label, grad, "gradients")
    if grad.dtype != param.dtype:
        raise TypeError(f"{label} has dtype {grad.dtype}; its parameter has {param.dtype}")
    if grad.shape != param.shape:
        raise ValueError(f"{label} has shape {tuple(grad.shape)}; its parameter has {tuple(param.shape)}")
    if _strides_that_matter(grad.shape, grad.stride()) != _strides_that_matter(param.shape, param.strides):
        raise ValueError(f"{label} has strides {grad.stride()}, its parameter {param.strides}: fastoptim reads "
                         "them in one memory order (torch's autograd makes them match; allocate the gradient "
                         "with torch.empty_like(param))")
    return bind(label, grad, order, hold=False)


def tensor_of(array: np.ndarray, order: tuple[int, ...]) -> torch.Tensor:
    """A tensor over `array`'s memory (no copy) with the axes of the parameter it belongs to."""
    if array.dtype.itemsize == 2 and array.dtype.kind in "uV":  # bfloat16 (ml_dtypes' or bit patterns)
        tensor = torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return tensor.permute(inverse) if inverse != tuple(range(len(order))) else tensor


def array_of(label: str, tensor: Any, order: tuple[int, ...]) -> np.ndarray:
    """A saved state tensor as an array in the parameter's view order (a view where it can be)."""
    if isinstance(tensor, np.ndarray):
        return tensor.transpose(order) if tensor.ndim == len(order) and order else tensor
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{label} must be a tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    plain = tensor.detach()
    if plain.layout != torch.strided:
        raise TypeError(f"{label} has layout {plain.layout}; state tensors are dense")
    if plain.dtype == torch.bfloat16:
        array: np.ndarray = plain.view(torch.int16).numpy().view(np.uint16)
    else:
        array = plain.resolve_conj().resolve_neg().numpy()
    return array.transpose(order) if array.ndim == len(order) and order else array
