"""Row-sparse gradients: the rows of a parameter a batch touched, and nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RowSparse"]


class RowSparse:
    """A gradient that holds some rows of a parameter: ``values[k]`` is the gradient of row
    ``indices[k]`` (the parameter's first dimension), every other row's is zero — what an
    embedding lookup's backward pass gives, and ``torch.sparse_coo_tensor(indices[None], values)``
    in torch.

    Repeated indices are summed (in the order given) before the step. The arrays are read, never
    written, and checked at each step: ``indices`` integers in ``[0, rows)``, ``values`` of the
    parameter's dtype and of shape ``(len(indices),) + param.shape[1:]``, C-contiguous.
    :class:`~fastoptim.SparseAdam` and :class:`~fastoptim.RowwiseAdagrad` (``fo.Adagrad(...,
    rowwise=True)``) take them; the other optimizers step whole arrays and refuse them.

    Example:
        >>> table = np.zeros((1000, 16), np.float32)
        >>> opt = fo.SparseAdam({"emb": table})
        >>> rows = np.array([3, 17, 3])
        >>> info = opt.step({"emb": fo.RowSparse(rows, np.ones((3, 16), np.float32))})
    """

    __slots__ = ("indices", "values")

    def __init__(self, indices: Any, values: np.ndarray) -> None:
        if not isinstance(indices, np.ndarray):
            indices = np.asarray(indices)
            if indices.size == 0:  # [] is float64 to NumPy: no rows, whatever their type
                indices = indices.astype(np.int64)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {indices.dtype}")
        if indices.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {indices.shape}")
        if not isinstance(values, np.ndarray):
            raise TypeError(f"values must be a numpy.ndarray, got {type(values).__name__}")
        if values.ndim < 1 or len(values) != len(indices):
            raise ValueError(f"values must hold one row per index: {len(indices)} indices, values of shape "
                             f"{values.shape}")
        self.indices = indices
        self.values = values

    def checked_for(self, param: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices as int64, values), fit to step the rows of `param`; TypeError/ValueError
        naming `label` otherwise."""
        indices, values = self.indices, self.values
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise TypeError(f"{label}.indices must be a one-dimensional integer array")
        if param.ndim == 0:
            raise ValueError(f"{label} is a RowSparse, but its parameter is 0-d: it has no rows")
        if not isinstance(values, np.ndarray) or values.dtype != param.dtype:
            got = values.dtype if isinstance(values, np.ndarray) else type(values).__name__
            raise TypeError(f"{label}.values must be {param.dtype}, its parameter's dtype; got {got}")
        if values.shape != (len(indices),) + param.shape[1:]:
            raise ValueError(f"{label}.values must have shape {(len(indices),) + param.shape[1:]} (one row of the "
                             f"parameter per index), got {values.shape}")
        if not values.flags.c_contiguous or not values.flags.aligned:
            raise ValueError(f"{label}.values must be C-contiguous (np.ascontiguousarray(values))")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= param.shape[0]):
            bad = indices[(indices < 0) | (indices >= param.shape[0])][0]
            raise ValueError(f"{label}.indices holds {int(bad)}, out of range for a parameter of {param.shape[0]} rows")
        if indices.dtype != np.int64 or not indices.flags.c_contiguous or not indices.flags.aligned:
            indices = np.ascontiguousarray(indices, dtype=np.int64)  # the indices only: read, never written
        return indices, values

    def __repr__(self) -> str:
        return f"RowSparse({len(self.indices)} rows of shape {self.values.shape[1:]}, {self.values.dtype})"
