"""The torch face of the rules stepped one parameter at a time (Adafactor, Muon, SparseAdam).

Their engines run a few native passes over each parameter with NumPy code between them (the
factors' vectors, Muon's matrix products over its own buffers). Python code may run between two
passes, so each pass re-checks the memory of the tensors it reads or writes (the engine's
``_guards_by_name``, a parameter's guard and its gradient's) and keeps the GIL while it runs; the
step first checks every guard at once, so a tensor moved before the step is refused with nothing
written.
"""

from __future__ import annotations

from typing import Any

from ._optimizer import Optimizer

__all__ = ["PerArrayTorchOptimizer"]


class PerArrayTorchOptimizer(Optimizer):
    """A torch optimizer over an engine that steps one parameter at a time (``fastoptim._per_array``)."""

    _any_order = False  # their rows and columns (SparseAdam's rows) are the tensor's own last (first) axes

    def _attach(self, engine: Any) -> None:
        """The passes keep the GIL (matrix_binding.cpp, row_binding.cpp): nothing to change."""

    def _set_guards(self, engine: Any) -> None:
        engine._guards_by_name = {index: (bound.guard,) if grad is None else (bound.guard, grad.guard)
                                  for index, (bound, grad) in enumerate(zip(self._params, self._grads))}

    def _completed(self, numpy_dict: dict[str, Any]) -> dict[str, Any]:
        """The engine's state dict as it loads it: one entry per parameter, fresh where torch saved
        none (a parameter that never stepped), without the ``step`` torch's Muon never counted."""
        engine: Any = self._built()
        counts_steps = engine._counts_steps
        state = {name: entry if counts_steps else {k: v for k, v in entry.items() if k != "step"}
                 for name, entry in numpy_dict["state"].items()}
        for group, names in zip(engine.param_groups, (g["params"] for g in numpy_dict["param_groups"])):
            for name in names:
                if name not in state:
                    state[name] = engine._new_state(self._params[name].view, group)
        return {**numpy_dict, "state": state}
