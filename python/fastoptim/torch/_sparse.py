"""SparseAdam for torch: sparse COO gradients (``nn.Embedding(sparse=True)``) as row-sparse ones.

A sparse gradient is coalesced (torch sums repeated rows, as ``torch.optim.SparseAdam`` does) and
its row indices and values are viewed as a :class:`fastoptim.RowSparse`; the native row step then
reads and writes only those rows. Dense gradients are taken too (every row), so a model's dense
parameters can share the optimizer. The row step keeps the GIL throughout and re-checks the
parameters' and dense gradients' memory first (``_core.row_step``'s guards); the indices and
values are views of alias tensors this step makes (``indices()``, ``values()``), which no other
code holds to repoint, over the coalesced gradient's own storages.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import SparseAdam as _NumpySparseAdam
from ..row_sparse import RowSparse
from ._per_array import PerArrayTorchOptimizer

__all__ = ["SparseAdam"]


def _rows_of(label: str, grad: torch.Tensor, param: torch.Tensor) -> RowSparse:
    """A sparse COO gradient's rows, coalesced, or TypeError/ValueError naming `label`."""
    if not grad.is_cpu:
        raise TypeError(f"{label} is on {grad.device}; fastoptim.torch steps CPU tensors")
    if grad.sparse_dim() != 1:
        raise ValueError(f"{label} is sparse in {grad.sparse_dim()} dimensions; SparseAdam takes gradients sparse "
                         "along the first (rows), as nn.Embedding(sparse=True) makes them")
    if grad.dtype != param.dtype or grad.shape != param.shape:
        raise ValueError(f"{label} is {grad.dtype} of shape {tuple(grad.shape)}; its parameter is {param.dtype} of "
                         f"shape {tuple(param.shape)}")
    coalesced = grad.detach().coalesce()
    return RowSparse(coalesced.indices()[0].contiguous().numpy(), coalesced.values().contiguous().numpy())


class SparseAdam(PerArrayTorchOptimizer):
    _numpy_class = _NumpySparseAdam
    _takes_sparse = True
    _step_tensor = False

    def _sparse_rows(self, label: str, grad: torch.Tensor, param: torch.Tensor) -> RowSparse:
        return _rows_of(label, grad, param)

    def _set_guards(self, engine: Any) -> None:
        engine._guards = self._guard_list()  # the row step checks them all, after every table is read
