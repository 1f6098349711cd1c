"""The base of the rules that step the rows of a parameter (SparseAdam, row-wise Adagrad): a
gradient is an array (every row) or a :class:`~fastoptim.RowSparse` (the rows a batch touched),
and one native call steps every parameter, dense and sparse, its rows shared among the threads
(``row_passes.hpp``). The work is proportional to the rows given.

It keeps what :class:`~fastoptim._per_array.PerArrayOptimizer` keeps (groups, ``grad_scale``,
``max_grad_norm`` and ``skip_nonfinite`` measured over the rows given, state keyed by name,
exact resume, pickling) and refuses what a row-sparse step cannot carry.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ._core import check_grads, coalesce_rows, row_step
from ._per_array import REFUSED_OPTIONS, PerArrayOptimizer, measure_and_clip
from ._step_options import StepInfo
from ._validation import check_disjoint
from .row_sparse import RowSparse

__all__ = ["RowOptimizer"]

_ROWS_REFUSED = {
    **REFUSED_OPTIONS,
    "state_dtype": (None, "its rows are stepped in the parameter's dtype: 8-bit state is quantized in blocks of "
                          "256 elements, so a step would requantize rows it does not touch, and bfloat16 rows are "
                          "not implemented"),
    "ema_decay": (None, "an average moves every row at every step, and a row-sparse step touches a few; keep an "
                        "EMA with NumPy where you need one"),
}

Groups = list[tuple[dict[str, Any], list[Hashable], list[np.ndarray]]]


def _split_sparse(grads: Any, names: Sequence[Hashable]) -> tuple[Any, dict[Hashable, RowSparse]]:
    """`grads` with each RowSparse replaced by None (for check_grads), and the RowSparse by name."""
    if isinstance(grads, Mapping):
        sparse = {k: g for k, g in grads.items() if isinstance(g, RowSparse)}
        return ({k: (None if k in sparse else g) for k, g in grads.items()} if sparse else grads), sparse
    if isinstance(grads, (list, tuple)) and len(grads) == len(names):
        sparse = {names[i]: g for i, g in enumerate(grads) if isinstance(g, RowSparse)}
        return ([None if isinstance(g, RowSparse) else g for g in grads] if sparse else grads), sparse
    return grads, {}


class RowOptimizer(PerArrayOptimizer):
    """Steps rows through ``_core.row_step``. Subclasses set ``_rule`` and ``_counts_steps`` and
    define ``_check_hyper``, ``_new_state``, ``_state_shapes`` and ``_table``."""

    _rule: ClassVar[str]
    _counts_steps: ClassVar[bool] = True
    _refused: ClassVar[Mapping[str, tuple[Any, str]]] = _ROWS_REFUSED
    # fastoptim.torch's guards of the tensors its arrays view, re-checked by the native step
    _guards: list[tuple[str, Any, Any, int, int]] | None = None

    def _table(self, group: Mapping[str, Any], state: Mapping[str, Any],
               step: int) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...]]:
        """The state arrays the native step writes and its coefficients, for the `step`-th step."""
        raise NotImplementedError

    def _checked_step(self, grads: Any) -> tuple[Groups, dict[Hashable, Any]]:
        groups = self._checked_groups()
        names = [n for _, group_names, _ in groups for n in group_names]
        params = [p for _, _, group_params in groups for p in group_params]
        states = self._check_state(self.state, names, params)
        dense, sparse = _split_sparse(grads, names)
        grads_of: dict[Hashable, Any] = dict(zip(names, check_grads(dense, names, params, False)))
        for name, param in zip(names, params):
            if name in sparse:
                grads_of[name] = sparse[name].checked_for(param, f"grads[{name!r}]")
        labels = [f"params[{n!r}]" for n in names] + [f"state array {i}" for i in range(len(states))]
        read: list[np.ndarray] = []
        for name, g in grads_of.items():
            if isinstance(g, tuple):  # the indices too: the step reads them while it writes the rows
                if not any(g[0] is r for r in read):  # one list of ids may index several tables
                    labels.append(f"grads[{name!r}].indices")
                    read.append(g[0])
                labels.append(f"grads[{name!r}].values")
                read.append(g[1])
            elif g is not None:
                labels.append(f"grads[{name!r}]")
                read.append(g)
        check_disjoint(labels, params + states + read)
        return groups, grads_of

    def _step(self, grads: Any, mult: float, max_norm: float | None, skip_nonfinite: bool) -> StepInfo:
        with self._lock:
            groups, grads_of = self._checked_step(grads)
            params_of = {n: p for _, group_names, ps in groups for n, p in zip(group_names, ps)}
            for name, g in grads_of.items():  # (rows, values): distinct rows, each one's values summed
                if isinstance(g, tuple):
                    grads_of[name] = coalesce_rows(g[0], g[1], params_of[name].shape[0], f"grads[{name!r}]")
            info, mult = measure_and_clip([g[1] if isinstance(g, tuple) else g for g in grads_of.values()],
                                          mult, max_norm, skip_nonfinite, self._guards or ())
            if info.skipped:
                return info
            tables, advanced = [], []
            for hyper, group_names, group_params in groups:
                sign = -1.0 if hyper["maximize"] else 1.0
                for name, param in zip(group_names, group_params):
                    g = grads_of[name]
                    if g is None:
                        continue
                    state = self.state[name]
                    step = int(state["step"]) + 1
                    first, second, coeffs = self._table(hyper, state, step)
                    rows, values = g if isinstance(g, tuple) else (None, g)
                    tables.append((param, first, second, values, rows, float(sign * mult), coeffs))
                    advanced.append((state, step))
            row_step(self._rule, tables, self._guards or [])
            for state, step in advanced:  # after the call, which checks everything before it writes
                state["step"] = step
            return info
