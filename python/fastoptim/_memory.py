"""Where optimizer state lives: beside its parameter's alignment."""

from __future__ import annotations

import numpy as np

_VECTOR_BYTES = 64  # the widest vector (AVX-512) and a cache line


def state_like(param: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """Zeros shaped and ordered like ``param``, of its dtype or `dtype` (bfloat16 state),
    starting at the same element offset within a 64-byte line. The kernels run scalars until
    the parameter's address is vector-aligned; state that shares its offset is then aligned
    too, so no vector access straddles two cache lines. Large buffers keep NumPy's hugepage
    advice."""
    dtype = param.dtype if dtype is None else np.dtype(dtype)
    itemsize = dtype.itemsize
    offset = param.ctypes.data % _VECTOR_BYTES
    if param.size == 0 or offset % param.itemsize:
        return np.zeros_like(param, dtype=dtype)
    offset = offset // param.itemsize * itemsize % _VECTOR_BYTES
    buffer = np.zeros(param.size + _VECTOR_BYTES // itemsize, dtype)
    start = (offset - buffer.ctypes.data) % _VECTOR_BYTES // itemsize
    flat = buffer[start:start + param.size]
    if param.flags.f_contiguous and not param.flags.c_contiguous:
        return flat.reshape(param.shape, order="F")
    return flat.reshape(param.shape, order="C")
