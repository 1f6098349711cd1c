"""L-BFGS (torch.optim.LBFGS), its vector algebra in native sweeps over all parameters at once."""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._core import check_grads, combine
from ._param_groups import RESERVED, raw_groups, read_group
from ._per_array import check_c_order_param
from ._step_options import ClosureStepInfo
from ._strong_wolfe import strong_wolfe
from ._validation import check_disjoint, check_int, check_real

__all__ = ["HYPER_KEYS", "LBFGS", "checked_loss"]

Closure = Callable[[], Any]
HYPER_KEYS = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn")


def checked_loss(loss: Any) -> float:
    """A closure's loss as a float: TypeError for anything but a real number (or a 0-d array or
    one-element tensor of one), ValueError for NaN."""
    if isinstance(loss, np.ndarray) and loss.shape == ():
        loss = loss[()]
    elif hasattr(loss, "numel") and hasattr(loss, "item") and loss.numel() == 1:  # a torch tensor
        loss = loss.item()
    if isinstance(loss, (bool, np.bool_)) or not isinstance(loss, numbers.Real):
        raise TypeError(f"closure must return a result with a real loss, got {type(loss).__name__}")
    value = float(loss)
    if math.isnan(value):
        raise ValueError("closure returned a NaN loss")
    return value


class LBFGS:
    r"""L-BFGS (Liu & Nocedal 1989; Nocedal & Wright, Algorithm 7.4) with torch.optim.LBFGS's
    semantics and defaults, ``line_search_fn="strong_wolfe"`` included (the oracle of the tests).

    A full-batch method: ``step(closure)`` evaluates the objective several times. `closure()`
    returns ``(loss, grads)`` for the parameters as they are when it is called (grads a list in
    the parameters' order or a dict keyed like them; None counts as zeros). Each of up to
    `max_iter` iterations, with g the gradient and (sᵢ, yᵢ) the last `history_size` pairs of
    steps and gradient changes with yᵢ·sᵢ > 1e-10, ρᵢ = 1/(yᵢ·sᵢ)::

        q ← −g;  for i newest → oldest:  αᵢ ← ρᵢ sᵢ·q;  q ← q − αᵢ yᵢ
        d ← γ q (γ = y·s / y·y of the newest pair);  for i oldest → newest:  d ← d + (αᵢ − ρᵢ yᵢ·d) sᵢ
        p ← p + t d

    with t = lr (on the very first iteration min(1, 1/‖g‖₁)·lr), or the strong Wolfe line search's
    step. It stops on ‖g‖∞ ≤ `tolerance_grad`, a change of loss or of step below
    `tolerance_change`, or `max_eval` evaluations.

    The vectors are the parameters end to end, in their dtype (all parameters share one): the
    two-loop recursion and every dot product run as native sweeps, each fusing an update with the
    next dot product, their sums in fixed blocks and lanes, so the bits are the same on every
    target and thread count. Memory: the history, 2·(history_size + 1) vectors the size of all the
    parameters together (one pair spare, written before it is accepted), allocated once at
    construction, plus three more (the gradient, the previous one and the direction); the strong
    Wolfe line search copies the parameters into one more such vector (allocated at its first use)
    and allocates a gradient per evaluation,
    as torch's.

    Args:
        params: arrays, a dict name -> array, or one group dict (float32 or float64, C order, one
            dtype for all).
        lr: the step length, >= 0 (default 1).
        max_iter: iterations per step, >= 1 (default 20).
        max_eval: evaluations per step, >= 1 (default None: max_iter · 5 // 4).
        tolerance_grad: stop when every ``|g|`` is at most this, >= 0 (default 1e-7).
        tolerance_change: stop when the loss or the step changes less, >= 0 (default 1e-9).
        history_size: the pairs kept, >= 1 (default 100); fixed at construction.
        line_search_fn: None (a fixed step) or "strong_wolfe" (default None).

    ``step`` returns a StepInfo whose ``loss`` is the first evaluation's, as torch's step
    returns. A closure result that is not ``(loss, grads)`` as described, or a NaN loss, raises
    and ends the step (at the first evaluation, nothing has changed): the parameters stay where
    the step's last update left them (a line search's trial point is undone), the state agrees
    with them, and the next step continues from there. torch carries on through a NaN loss.

    Example:
        >>> x = np.array([3.0, -2.0])
        >>> opt = fo.LBFGS([x], line_search_fn="strong_wolfe")
        >>> info = opt.step(lambda: (float(x @ x), [2 * x]))
        >>> bool(np.abs(x).max() < 1e-6)
        True
    """

    def __init__(self, params: Any, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        raw = raw_groups(params)
        if len(raw) != 1:
            raise ValueError(f"LBFGS takes one parameter group (as torch's), got {len(raw)}")
        group = read_group(raw[0], [])
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        hyper = {**defaults, **group.hyper}
        if hyper["max_eval"] is None:
            hyper["max_eval"] = check_int("max_iter", hyper["max_iter"], low=1) * 5 // 4
        self._check_hyper(hyper)
        if not group.arrays:
            raise ValueError("LBFGS needs at least one parameter")
        for name, param in zip(group.names, group.arrays):
            self._check_param(name, param)
        dtypes = {p.dtype for p in group.arrays}
        if len(dtypes) > 1:
            raise TypeError("LBFGS steps one flat vector: its parameters must share a dtype, got "
                            f"{sorted(map(str, dtypes))}")
        check_disjoint([f"params[{n!r}]" for n in group.names], group.arrays)
        self.defaults = {k: v for k, v in hyper.items() if k in HYPER_KEYS}
        self.param_groups: list[dict[str, Any]] = [{**hyper, "params": list(group.arrays),
                                                     "param_names": list(group.names)}]
        self._names, self._params = list(group.names), list(group.arrays)
        self._dtype = self._params[0].dtype
        sizes = [p.size for p in self._params]
        self._offsets = np.concatenate(([0], np.cumsum(sizes))).astype(int).tolist()
        n = self._offsets[-1]
        self._history_size = int(hyper["history_size"])
        self._dirs = np.zeros((self._history_size + 1, n), self._dtype)  # y pairs; one row spare
        self._steps = np.zeros((self._history_size + 1, n), self._dtype)  # s pairs
        self._grads = (np.zeros(n, self._dtype), np.zeros(n, self._dtype))  # gathered in turn
        self._direction = np.zeros(n, self._dtype)
        self._x_init: np.ndarray | None = None  # the line search's start, allocated once
        self._lock = threading.RLock()
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}
        self._reset_history()

    def _reset_history(self) -> None:
        self._order: list[int] = []  # rows of the history, oldest first
        self._ro: list[float] = []
        self._h_diag = 1.0
        self._t: float | None = None
        self._prev_grad: np.ndarray | None = None
        self._prev_loss: float | None = None

    # ---- checks -------------------------------------------------------------------------------
    @staticmethod
    def _check_hyper(group: Mapping[str, Any]) -> None:
        check_real("lr", group.get("lr"), low=0.0)
        check_int("max_iter", group.get("max_iter"), low=1)
        check_int("max_eval", group.get("max_eval"), low=1)
        check_real("tolerance_grad", group.get("tolerance_grad"), low=0.0)
        check_real("tolerance_change", group.get("tolerance_change"), low=0.0)
        check_int("history_size", group.get("history_size"), low=1)
        if group.get("line_search_fn") not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got {group.get('line_search_fn')!r}")

    @staticmethod
    def _check_param(name: Any, param: np.ndarray) -> None:
        check_c_order_param(f"params[{name!r}]", param, "LBFGS")

    def _checked_group(self) -> dict[str, Any]:
        """The group's hyper-parameters, checked as a scheduler or a user left them."""
        if len(self.param_groups) != 1 or not isinstance(self.param_groups[0], dict):
            raise ValueError("param_groups was changed; LBFGS has one group, edited in place")
        group = self.param_groups[0]
        if group.get("params") != self._params or any(a is not b for a, b in zip(group["params"], self._params)):
            raise ValueError("param_groups[0]['params'] was changed; the parameters of LBFGS are fixed")
        hyper = {k: v for k, v in group.items() if k not in RESERVED}
        self._check_hyper(hyper)
        if int(hyper["history_size"]) != self._history_size:
            raise ValueError(f"history_size is fixed at construction ({self._history_size}): its buffers are "
                             "allocated then")
        for k, (name, param) in enumerate(zip(self._names, self._params)):
            self._check_param(name, param)
            if param.dtype != self._dtype or param.size != self._offsets[k + 1] - self._offsets[k]:
                raise ValueError(f"params[{name!r}] changed dtype or size in place; LBFGS's vectors were laid out "
                                 "for the parameters it was given")
        return hyper

    # ---- evaluations --------------------------------------------------------------------------
    def _evaluate(self, closure: Closure, out: np.ndarray) -> tuple[float, float, float]:
        """Call the closure and gather its gradient into `out`: (loss, max |g|, Σ |g|)."""
        result = closure()
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"closure must return (loss, grads), got {type(result).__name__}")
        loss, grads = result
        loss = checked_loss(loss)
        ordered = check_grads(grads, self._names, self._params, False)
        most, total = 0.0, 0.0
        for k, grad in enumerate(ordered):
            piece = out[self._offsets[k]:self._offsets[k + 1]]
            if grad is None:  # torch's zeros
                piece.fill(0)
                continue
            _, m, s = combine(piece, grad.reshape(-1), 1.0, None, 0.0, None, True)
            most, total = (m if math.isnan(m) else max(most, m)), total + s
        return loss, most, total

    def _add_to_params(self, step: float, direction: np.ndarray) -> None:
        for k, param in enumerate(self._params):
            flat = param.reshape(-1)
            combine(flat, flat, 1.0, direction[self._offsets[k]:self._offsets[k + 1]], step, None)

    def _set_params(self, flat: np.ndarray) -> None:
        for k, param in enumerate(self._params):
            np.copyto(param.reshape(-1), flat[self._offsets[k]:self._offsets[k + 1]])

    def _flat_params(self) -> np.ndarray:
        """The parameters end to end, in a buffer allocated at the first line search and reused."""
        if self._x_init is None:
            self._x_init = np.empty_like(self._direction)
        for k, param in enumerate(self._params):
            np.copyto(self._x_init[self._offsets[k]:self._offsets[k + 1]], param.reshape(-1))
        return self._x_init

    # ---- the recursion ------------------------------------------------------------------------
    def _remember(self, grad: np.ndarray, t: float) -> None:
        """The pair of this iteration, y = g − g_prev and s = t·d, kept if y·s > 1e-10."""
        assert self._prev_grad is not None
        spare = next(r for r in range(self._history_size + 1) if r not in self._order)
        y, s = self._dirs[spare], self._steps[spare]
        yy, _, _ = combine(y, grad, 1.0, self._prev_grad, -1.0, y)
        ys, _, _ = combine(s, self._direction, t, None, 0.0, y)
        if ys > 1e-10:
            if len(self._order) == self._history_size:
                self._order.pop(0)
                self._ro.pop(0)
            self._order.append(spare)
            self._ro.append(1.0 / ys)
            self._h_diag = ys / yy

    def _two_loop(self, grad: np.ndarray) -> tuple[float, float]:
        """The direction d = −H·g into self._direction; returns (g·d, max |d|)."""
        d, order, ro = self._direction, self._order, self._ro
        k = len(order)
        if k == 0:
            gtd, most, _ = combine(d, grad, -self._h_diag, None, 0.0, grad, True)
            return gtd, most
        al = [0.0] * k
        dot, _, _ = combine(d, grad, -1.0, None, 0.0, self._steps[order[-1]])  # q = −g
        for i in range(k - 1, -1, -1):
            al[i] = dot * ro[i]
            if i > 0:  # q ← q − αᵢyᵢ, then sᵢ₋₁·q
                dot, _, _ = combine(d, d, 1.0, self._dirs[order[i]], -al[i], self._steps[order[i - 1]])
            else:  # r = γ(q − α₀y₀), then y₀·r
                h = self._h_diag
                dot, _, _ = combine(d, d, h, self._dirs[order[0]], -al[0] * h, self._dirs[order[0]])
        most = 0.0
        for i in range(k):  # r ← r + (αᵢ − ρᵢyᵢ·r)sᵢ, then yᵢ₊₁·r (g·d at the end)
            last = i == k - 1
            z = grad if last else self._dirs[order[i + 1]]
            dot, most, _ = combine(d, d, 1.0, self._steps[order[i]], al[i] - dot * ro[i], z, last)
        return dot, most

    # ---- the step -----------------------------------------------------------------------------
    def step(self, closure: Closure) -> ClosureStepInfo:
        """Up to ``max_iter`` iterations of L-BFGS on what `closure` returns (see the class)."""
        if not callable(closure):
            raise TypeError(f"LBFGS.step needs a closure returning (loss, grads), got {type(closure).__name__}")
        with self._lock:
            hyper = self._checked_group()
            return self._step(closure, hyper)

    def _other_grad_buffer(self) -> np.ndarray:
        """The gradient buffer that does not hold the previous gradient."""
        return self._grads[1] if self._prev_grad is self._grads[0] else self._grads[0]

    def _keep_as_previous(self, grad: np.ndarray) -> np.ndarray:
        """`grad` becomes the previous gradient, in one of the two buffers (a line search's is
        copied, as torch copies it); returns where it is."""
        if grad is not self._grads[0] and grad is not self._grads[1]:
            np.copyto(self._grads[0], grad)
            grad = self._grads[0]
        self._prev_grad = grad
        return grad

    def _step(self, closure: Closure, hyper: Mapping[str, Any]) -> ClosureStepInfo:
        lr, max_iter, max_eval = float(hyper["lr"]), int(hyper["max_iter"]), int(hyper["max_eval"])
        tolerance_grad, tolerance_change = float(hyper["tolerance_grad"]), float(hyper["tolerance_change"])
        state = self.state
        grad = self._other_grad_buffer()
        loss, grad_max, grad_sum = self._evaluate(closure, grad)
        orig_loss, current_evals = loss, 1
        state["func_evals"] += 1
        if grad_max <= tolerance_grad:
            return ClosureStepInfo(orig_loss)
        t = self._t
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:  # steepest descent, the history empty
                self._order, self._ro, self._h_diag = [], [], 1.0
                gtd, d_max, _ = combine(self._direction, grad, -1.0, None, 0.0, grad, True)
            else:
                assert t is not None  # set by every iteration, and by load_state_dict whenever n_iter > 0
                self._remember(grad, t)
                gtd, d_max = self._two_loop(grad)
            grad = self._keep_as_previous(grad)
            self._prev_loss = loss
            t = min(1.0, 1.0 / grad_sum) * lr if state["n_iter"] == 1 else lr
            self._t = t  # kept at once: a closure failing later leaves the pair (t·d, g) consistent
            if gtd > -tolerance_change:
                break
            evals = 0
            if hyper["line_search_fn"] is not None:
                x_init = self._flat_params()
                loss, grad, t, evals = strong_wolfe(self._directional(closure, x_init), t, self._direction,
                                                    loss, grad, gtd, d_max, max_ls=max_eval - current_evals)
                self._t = t
                self._add_to_params(t, self._direction)
                grad_max = combine(None, grad, 1.0, None, 0.0, None, True)[1]
            else:
                self._add_to_params(t, self._direction)
                if n_iter != max_iter:  # as torch: the last iteration's point is not evaluated
                    grad = self._other_grad_buffer()
                    loss, grad_max, grad_sum = self._evaluate(closure, grad)
                    evals = 1
            current_evals += evals
            state["func_evals"] += evals
            if n_iter == max_iter or current_evals >= max_eval or grad_max <= tolerance_grad:
                break
            if d_max * abs(t) <= tolerance_change or abs(loss - self._prev_loss) < tolerance_change:
                break
        return ClosureStepInfo(orig_loss)

    def _directional(self, closure: Closure, x: np.ndarray) -> Callable[[float], tuple[float, np.ndarray]]:
        """The objective at x + t·d: (loss, a new gradient); the parameters are x again after."""
        def evaluate(t: float) -> tuple[float, np.ndarray]:
            self._add_to_params(t, self._direction)
            try:
                grad = np.empty_like(self._direction)
                loss = self._evaluate(closure, grad)[0]
            finally:
                self._set_params(x)
            return loss, grad
        return evaluate

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state (copies: the history oldest first) and the group's hyper-parameters."""
        with self._lock:
            hyper = self._checked_group()
            started = self._prev_grad is not None
            state = {
                "func_evals": int(self.state["func_evals"]), "n_iter": int(self.state["n_iter"]),
                "d": self._direction.copy() if started else None, "t": self._t,
                "old_dirs": self._dirs[self._order], "old_stps": self._steps[self._order],  # indexing copies
                "ro": list(self._ro), "H_diag": self._h_diag,
                "prev_flat_grad": self._prev_grad.copy() if self._prev_grad is not None else None,
                "prev_loss": self._prev_loss,
            }
            return {"state": state, "param_groups": [{**hyper, "params": list(self._names)}]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, checked whole before anything changes; a resumed run
        continues bit-identically."""
        with self._lock:
            if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("state"), Mapping) or \
                    not isinstance(state_dict.get("param_groups"), Sequence) or len(state_dict["param_groups"]) != 1:
                raise TypeError("state_dict must be a dict with 'state' and one 'param_groups' entry, as state_dict() "
                                "returns")
            saved_group = state_dict["param_groups"][0]
            if not isinstance(saved_group, Mapping) or list(saved_group.get("params", ())) != self._names:
                raise ValueError("state_dict['param_groups'][0] names other parameters than this optimizer's")
            hyper = {k: v for k, v in saved_group.items() if k not in RESERVED}
            self._check_hyper(hyper)
            if int(hyper["history_size"]) != self._history_size:
                raise ValueError(f"state_dict has history_size {hyper['history_size']}, this optimizer "
                                 f"{self._history_size}")
            saved = _checked_saved_state(state_dict["state"], self._direction.size, self._dtype, self._history_size)
            self.param_groups[0].update(hyper)  # nothing below can fail
            k = len(saved["ro"])
            self._dirs[:k], self._steps[:k] = saved["old_dirs"], saved["old_stps"]
            self._order, self._ro = list(range(k)), [float(r) for r in saved["ro"]]
            self._h_diag, self._t = float(saved["H_diag"]), None if saved["t"] is None else float(saved["t"])
            self._prev_loss = None if saved["prev_loss"] is None else float(saved["prev_loss"])
            self._prev_grad = None
            if saved["prev_flat_grad"] is not None:
                np.copyto(self._grads[0], saved["prev_flat_grad"])
                self._prev_grad = self._grads[0]
            if saved["d"] is not None:
                np.copyto(self._direction, saved["d"])
            self.state = {"func_evals": int(saved["func_evals"]), "n_iter": int(saved["n_iter"])}

    def __getstate__(self) -> dict[str, Any]:
        saved = self.__dict__.copy()
        del saved["_lock"]
        saved["_prev_grad"] = None if self._prev_grad is None else int(self._prev_grad is self._grads[1])
        return saved

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        self.__dict__.update(saved)
        self._lock = threading.RLock()
        if self._prev_grad is not None:
            self._prev_grad = self._grads[int(self._prev_grad)]

    def __repr__(self) -> str:
        return f"LBFGS({len(self._params)} arrays, {self._direction.size} elements, history {self._history_size})"


def _checked_saved_state(state: Mapping[str, Any], n: int, dtype: np.dtype[Any],
                         history_size: int) -> Mapping[str, Any]:
    keys = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss"}
    if set(state) != keys:
        raise ValueError(f"state_dict['state'] holds {sorted(map(str, state))}; LBFGS keeps {sorted(keys)}")
    for key in ("func_evals", "n_iter"):
        check_int(f"state_dict['state'][{key!r}]", state[key], low=0)
    ro = state["ro"]
    if not isinstance(ro, (list, tuple)) or len(ro) > history_size:
        raise ValueError(f"state_dict['state']['ro'] must be a list of at most {history_size} numbers")
    for i, r in enumerate(ro):
        check_real(f"state_dict['state']['ro'][{i}]", r)
    for key in ("old_dirs", "old_stps"):
        _check_saved_array(key, state[key], (len(ro), n), dtype)
    started = ("d", "t", "prev_flat_grad", "prev_loss")
    if (int(state["n_iter"]) > 0) != all(state[key] is not None for key in started) or \
            (int(state["n_iter"]) == 0 and (any(state[key] is not None for key in started) or ro)):
        raise ValueError("state_dict['state'] is inconsistent: after an iteration (n_iter > 0) 'd', 't', "
                         "'prev_flat_grad' and 'prev_loss' are set, before one they are None and 'ro' is empty")
    for key in ("d", "prev_flat_grad"):
        if state[key] is not None:
            _check_saved_array(key, state[key], (n,), dtype)
    check_real("state_dict['state']['H_diag']", state["H_diag"])
    if state["t"] is not None:
        check_real("state_dict['state']['t']", state["t"])
    loss = state["prev_loss"]
    if loss is not None and (isinstance(loss, bool) or not isinstance(loss, numbers.Real) or math.isnan(loss)):
        raise ValueError(f"state_dict['state']['prev_loss'] must be a number (not NaN) or None, got {loss!r}")
    return state


def _check_saved_array(key: str, array: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
        got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"state_dict['state'][{key!r}] must be a {dtype} array of shape {shape}, got {got}")
