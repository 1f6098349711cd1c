"""L-BFGS for torch: fastoptim's native vector algebra, torch's own reads and writes of the tensors.

The engine is :class:`fastoptim.LBFGS`; its vectors (the history, the direction, the gathered
gradients) are arrays it owns. The parameters and their gradients are read and written only
through torch's operations (``add_``, ``copy_``), as torch.optim.LBFGS does: the closure runs
the user's code between those reads and writes, and a torch operation follows a tensor wherever
its memory is, so nothing needs guarding. Each ``add_`` bumps the parameter's autograd version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .. import lbfgs as _lbfgs
from .._core import combine
from .._step_options import ClosureStepInfo
from ._hooks import hooked_load, hooked_state_dict
from ._state import plain
from ._tensors import param_view

__all__ = ["LBFGS"]


class _TensorLBFGS(_lbfgs.LBFGS):
    """fastoptim.LBFGS whose parameters are torch tensors, reached only through torch's operations.
    It is built over views of the tensors, read for their sizes and dtype and never through."""

    def __init__(self, tensors: list[torch.Tensor], views: list[np.ndarray], hyper: Mapping[str, Any]) -> None:
        super().__init__(views, **hyper)
        self._tensors = tensors

    def _pieces(self, flat: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each tensor and the piece of `flat` (an array of ours) that stands for it, shaped like it."""
        vector = torch.from_numpy(flat)
        offsets = self._offsets
        return [(t, vector[offsets[k]:offsets[k + 1]].view(t.shape)) for k, t in enumerate(self._tensors)]

    def _evaluate(self, closure: Callable[[], Any], out: np.ndarray) -> tuple[float, float, float]:
        """Call the closure (it runs backward), gather the ``.grad`` into `out` (None as zeros, as
        torch): (loss, max |g|, Σ|g|)."""
        loss = _lbfgs.checked_loss(closure())
        with torch.no_grad():
            for tensor, piece in self._pieces(out):
                grad = tensor.grad
                if grad is None:
                    piece.zero_()
                else:
                    piece.copy_(grad.to_dense() if grad.is_sparse else grad)
        _, most, total = combine(None, out, 1.0, None, 0.0, None, True)
        return loss, most, total

    def _add_to_params(self, step: float, direction: np.ndarray) -> None:
        with torch.no_grad():
            for tensor, piece in self._pieces(direction):
                tensor.add_(piece, alpha=step)

    def _set_params(self, flat: np.ndarray) -> None:
        with torch.no_grad():
            for tensor, piece in self._pieces(flat):
                tensor.copy_(piece)

    def _flat_params(self) -> np.ndarray:
        if self._x_init is None:
            self._x_init = np.empty_like(self._direction)
        with torch.no_grad():
            for tensor, piece in self._pieces(self._x_init):
                piece.copy_(tensor)
        return self._x_init


class LBFGS(torch.optim.Optimizer):
    """L-BFGS over torch CPU tensors, torch.optim.LBFGS's arguments, defaults and state dict (set by
    ``_for_torch``'s docstring)."""

    _numpy_class = _lbfgs.LBFGS
    _torch_note = ("For torch tensors the closure is torch.optim.LBFGS's: it clears the gradients, computes "
                   "the loss, calls backward() and returns the loss; step(closure) returns that first loss "
                   "(``opt.last_step_info`` holds fastoptim's ClosureStepInfo). The parameters and gradients are "
                   "read and written with torch's own operations; the vector algebra is fastoptim's. A NaN loss "
                   "raises and ends the step (torch.optim.LBFGS carries on), as described below.\n\n")

    def __init__(self, params: Any, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        _lbfgs.LBFGS._check_hyper({k: plain(v) for k, v in defaults.items()})
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS takes one parameter group (as torch's)")
        tensors = list(self.param_groups[0]["params"])
        views = []
        for index, tensor in enumerate(tensors):
            bound, _ = param_view(f"params[{index}]", tensor)
            if tensor.dtype == torch.bfloat16:
                raise TypeError(f"params[{index}] is bfloat16; LBFGS steps float32 and float64 tensors")
            views.append(bound.view)
        self._sizes = [(t.shape, t.dtype) for t in tensors]
        self._engine = _TensorLBFGS(tensors, views, {k: plain(v) for k, v in defaults.items()})
        self.last_step_info: ClosureStepInfo | None = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_engine", None) is not None:
            raise ValueError("LBFGS takes one parameter group (as torch's); its vectors are laid out at construction")
        super().add_param_group(param_group)

    def _checked_tensors(self) -> None:
        """The tensors as the engine laid its vectors out for (a tensor repointed with p.data =
        of the same shape and dtype is followed, as torch's L-BFGS follows it)."""
        group = self.param_groups[0] if len(self.param_groups) == 1 else None
        if group is None or group.get("params") != self._engine._tensors or \
                any(a is not b for a, b in zip(group["params"], self._engine._tensors)):
            raise ValueError("param_groups was changed; LBFGS's parameters are fixed (nothing was updated)")
        for index, (tensor, (shape, dtype)) in enumerate(zip(self._engine._tensors, self._sizes)):
            if tensor.shape != shape or tensor.dtype != dtype or tensor.device.type != "cpu":
                raise ValueError(f"params[{index}] is now {tensor.dtype} of shape {tuple(tensor.shape)} on "
                                 f"{tensor.device}; LBFGS laid out its vectors for {dtype} of shape {tuple(shape)} "
                                 "(nothing was updated)")

    @torch.no_grad()
    def step(self, closure: Any) -> Any:  # type: ignore[override]
        """Up to ``max_iter`` iterations; `closure` clears the gradients, computes the loss, calls
        ``backward()`` and returns the loss, as for torch.optim.LBFGS. Returns the first loss."""
        if not callable(closure):
            raise TypeError(f"LBFGS.step needs a closure that computes the loss, calls backward() and returns the "
                            f"loss, got {type(closure).__name__}")
        self._checked_tensors()
        engine = self._engine
        first: list[Any] = []

        def evaluate() -> Any:
            with torch.enable_grad():
                loss = closure()
            if not first:
                first.append(loss)
            return loss

        engine.param_groups[0].update({k: plain(self.param_groups[0][k]) for k in _lbfgs.HYPER_KEYS})
        self.last_step_info = engine.step(evaluate)
        return first[0] if first else None

    # ---- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> defaultdict[torch.Tensor, Any]:
        """torch's layout: the first parameter -> its state (a snapshot of copies, as state_dict)."""
        result: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        engine = getattr(self, "_engine", None)
        saved = self._torch_state() if engine is not None else {}
        if saved:
            result[engine._tensors[0]] = saved  # type: ignore[union-attr]
        return result

    @state.setter
    def state(self, value: Mapping[Any, Any]) -> None:
        if getattr(self, "_engine", None) is not None or len(value):
            raise AttributeError("the state of fastoptim.torch.LBFGS is its engine's: restore it with load_state_dict")

    def _torch_state(self) -> dict[str, Any]:
        """The engine's state as torch.optim.LBFGS keeps it ({} before the first evaluation)."""
        saved = self._engine.state_dict()["state"]
        if saved["func_evals"] == 0:
            return {}
        state: dict[str, Any] = {"func_evals": saved["func_evals"], "n_iter": saved["n_iter"]}
        if saved["d"] is None:  # torch sets them after its first iteration
            return state
        dtype = torch.from_numpy(np.zeros(0, self._engine._dtype)).dtype  # NumPy's dtype as torch's, once

        def scalar(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=dtype)

        state.update(d=torch.from_numpy(saved["d"]), t=saved["t"],
                     old_dirs=[torch.from_numpy(row) for row in saved["old_dirs"]],
                     old_stps=[torch.from_numpy(row) for row in saved["old_stps"]],
                     ro=[scalar(r) for r in saved["ro"]], H_diag=scalar(saved["H_diag"]),
                     prev_flat_grad=torch.from_numpy(saved["prev_flat_grad"]), prev_loss=saved["prev_loss"])
        return state

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.LBFGS's layout: ``{"state": {0: {...}}, "param_groups": [{..., "params": [0, 1, ...]}]}``."""
        return hooked_state_dict(self, self._state_dict)

    def _state_dict(self) -> dict[str, Any]:
        state = self._torch_state()
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {0: state} if state else {},
                "param_groups": [{**group, "params": list(range(len(self._sizes)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this class or torch.optim.LBFGS's, checked whole first."""
        hooked_load(self, state_dict, self._load_state_dict)

    def _load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("state"), Mapping) or \
                not isinstance(state_dict.get("param_groups"), (list, tuple)) or len(state_dict["param_groups"]) != 1:
            raise TypeError("state_dict must be a dict with 'state' and one 'param_groups' entry, as state_dict() "
                            "returns")
        saved_group = state_dict["param_groups"][0]
        ids = saved_group.get("params") if isinstance(saved_group, Mapping) else None
        if not isinstance(ids, (list, tuple)) or len(ids) != len(self._sizes):
            raise ValueError(f"state_dict['param_groups'][0] holds {len(ids or ())} parameters; this LBFGS "
                             f"{len(self._sizes)}")
        saved = state_dict["state"]
        if len(saved) > 1 or (saved and next(iter(saved)) != ids[0]):
            raise ValueError("state_dict['state'] must hold one entry, for the first parameter (as torch's LBFGS)")
        entry = next(iter(saved.values())) if saved else {}
        engine_dict = {"state": _engine_state(entry, self._engine._direction.size, self._engine._dtype),
                       "param_groups": [{**{k: plain(saved_group[k]) for k in _lbfgs.HYPER_KEYS if k in saved_group},
                                         "params": list(self._engine._names)}]}
        self._engine.load_state_dict(engine_dict)
        self.param_groups[0].update({k: v for k, v in saved_group.items() if k != "params"})

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a fastoptim.torch.LBFGS is not pickled or copied: save opt.state_dict() with torch.save")


def _engine_state(entry: Any, n: int, dtype: np.dtype[Any]) -> dict[str, Any]:
    """torch.optim.LBFGS's state entry (``{}`` before any step) as fastoptim.LBFGS's, left to its checks."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"state_dict['state'][0] must be a dict, got {type(entry).__name__}")

    def array(value: Any) -> Any:
        return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value

    def rows(key: str) -> Any:
        value = entry.get(key) or []
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"state_dict['state'][0][{key!r}] must be a list of tensors")
        if not value:
            return np.zeros((0, n), dtype)
        return np.stack([np.asarray(array(v)) for v in value])

    def number(key: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"state_dict['state'][0][{key!r}] must hold one number")
            return float(value.item())
        return value

    ro = entry.get("ro") or []
    if not isinstance(ro, (list, tuple)):
        raise TypeError("state_dict['state'][0]['ro'] must be a list")
    h_diag = number("H_diag", entry.get("H_diag", 1.0))
    return {"func_evals": number("func_evals", entry.get("func_evals", 0)),
            "n_iter": number("n_iter", entry.get("n_iter", 0)),
            "d": array(entry.get("d")), "t": number("t", entry.get("t")),
            "old_dirs": rows("old_dirs"), "old_stps": rows("old_stps"),
            "ro": [number("ro", r) for r in ro], "H_diag": 1.0 if h_diag is None else h_diag,
            "prev_flat_grad": array(entry.get("prev_flat_grad")),
            "prev_loss": number("prev_loss", entry.get("prev_loss"))}

