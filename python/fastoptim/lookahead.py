"""Lookahead (Zhang et al., 2019) around any fastoptim optimizer, and Ranger = Lookahead(RAdam)."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._core import Plan
from ._forwarding import forwarded
from ._memory import state_like
from ._step_options import StepInfo, check_grad_scale, read_step_options
from ._tracked import Edits, SlotDict
from ._validation import check_disjoint, check_int, check_real, check_state_array, compute_dtype, is_bfloat16_param
from .adam_variants import RAdam
from .optimizer import Optimizer, _same_arrays
from .schedule_free import ScheduleFree

__all__ = ["Lookahead", "Ranger"]


def _slow_storage(param: np.ndarray) -> str:
    """The slow weights' layout: the parameter's dtype, float32 for a bfloat16 parameter (the
    small steps toward the fast weights would stall in bfloat16)."""
    return "float32" if is_bfloat16_param(param) else ""


class _ReadOnlyState(Mapping[Hashable, Any]):
    """``Lookahead.state``: each parameter's inner state with its slow weights, to read. Edits go
    to the two containers that own the arrays, so the view and the steps never disagree."""

    def __init__(self, data: Mapping[Hashable, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Hashable) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: Hashable, value: Any) -> None:
        raise TypeError("Lookahead.state is a read-only view: edit lookahead.optimizer.state[name][slot], or "
                        "lookahead.slow[name] for the slow weights")

    __delitem__ = __setitem__

    def __repr__(self) -> str:
        return repr(dict(self._data))


class Lookahead:
    r"""Lookahead (Zhang, Lucas, Hinton & Ba, NeurIPS 2019) around any fastoptim optimizer.
    PyTorch has no Lookahead.

    The slow weights φ start as the parameters θ. Every k steps of the inner optimizer,

    .. math::
        \phi \leftarrow \phi + \alpha\,(\theta - \phi),\qquad \theta \leftarrow \phi

    in one native pass over θ and φ. ``param_groups``, ``max_grad_norm`` and
    ``skip_nonfinite`` are the inner optimizer's, so schedules and edits act on it (a skipped
    step does not count towards k); ``state_dict()`` holds the inner state, the slow weights and the count.
    ``slow`` (name -> slow weights) takes a new array of its parameter's dtype (float32 for a
    bfloat16 parameter, whose synchronisation then rounds it to the nearest bfloat16), shape and
    memory order; ``state`` is a read-only view of both. :meth:`accumulate`, :attr:`ema` and
    :meth:`swap_ema` are the inner optimizer's; the EMA (an inner optimizer built with
    ``ema_decay``) follows the arrays the user holds: after a synchronisation it averages the
    synchronised weights, in a pass of its own.

    Args:
        optimizer: the inner fastoptim optimizer, which updates the fast weights θ.
        k: inner steps between synchronisations, an integer >= 1 (default 5).
        alpha: slow-weights step size α, in [0, 1] (default 0.5).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Lookahead(fo.SGD([w], lr=0.1), k=5, alpha=0.5)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastoptim optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, ScheduleFree):
            raise TypeError(f"optimizer: {type(optimizer).__name__} averages its own iterates (train()/eval()); "
                            "Lookahead's slow weights would average them again, behind its switch")
        self.optimizer = optimizer
        self._k = check_int("k", k, low=1)
        self._alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self._steps = 0
        self._start_empty()
        self._rebuild_sync()

    def _start_empty(self) -> None:
        self._lock = threading.RLock()
        self._edits = Edits()
        self._slow = SlotDict({}, self._edits)
        self._sync: Any = None
        self._sync_params: tuple[Any, ...] = ()  # the inner optimizer's params the sync plan was built for
        self._sync_slow: dict[Hashable, np.ndarray] = {}
        self._sync_checked: Any = None  # the inner optimizer's held params last found to be _sync_params

    # k and alpha are validated when set
    @property
    def k(self) -> int:
        return self._k

    @k.setter
    def k(self, value: int) -> None:
        self._k = check_int("k", value, low=1)

    @property
    def alpha(self) -> float:
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = check_real("alpha", value, low=0.0, high=1.0)
        self._sync.set_hyper(0, [self._alpha])

    param_groups = forwarded("param_groups", "The inner optimizer's groups, which schedules and edits act on.")
    defaults = forwarded("defaults")
    max_grad_norm = forwarded("max_grad_norm", "The inner optimizer's clipping norm.", settable=True)
    skip_nonfinite = forwarded("skip_nonfinite", "The inner optimizer's skip of non-finite steps.", settable=True)
    ema = forwarded("ema", "The inner optimizer's EMA of the weights (None without ema_decay).")
    state_dtype = forwarded("state_dtype", "The inner optimizer's state dtype (the slow weights keep the parameters', "
                            "float32 for bfloat16 ones).")
    state_rounding = forwarded("state_rounding")
    seed = forwarded("seed")
    min_8bit_size = forwarded("min_8bit_size")
    stochastic_rounding = forwarded("stochastic_rounding")
    pending = forwarded("pending", "Micro-batches accumulated since the last step.")

    def swap_ema(self) -> Any:
        """The inner optimizer's :meth:`Optimizer.swap_ema`."""
        return self.optimizer.swap_ema()

    def accumulate(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None], *,
                   grad_scale: float | None = None) -> None:
        """The inner optimizer's :meth:`Optimizer.accumulate`."""
        with self._lock:
            self.optimizer.accumulate(grads, grad_scale=grad_scale)

    def memory(self) -> dict[str, int]:
        """The inner optimizer's :meth:`Optimizer.memory`, with ``slow``: the slow weights' bytes."""
        return {**self.optimizer.memory(), "slow": sum(a.nbytes for a in self._slow.values())}

    def _set_counters(self, positions: Sequence[int], first_indices: Sequence[int],
                      sizes: Sequence[int] | None = None) -> None:
        self.optimizer._set_counters(positions, first_indices, sizes)

    @property
    def slow(self) -> SlotDict:
        """Parameter name -> slow weights φ, the arrays the next synchronisation updates."""
        return self._slow

    @slow.setter
    def slow(self, slow: Mapping[Hashable, np.ndarray]) -> None:
        self._slow = SlotDict(slow, self._edits)
        self._edits.arrays = True

    @property
    def state(self) -> Mapping[Hashable, Mapping[str, np.ndarray]]:
        """The inner optimizer's state, with each parameter's slow weights under ``slow``: a
        read-only view (edit ``optimizer.state`` and ``slow``)."""
        return _ReadOnlyState({name: _ReadOnlyState({**slots, "slow": self._sync_slow[name]})
                               for name, slots in self.optimizer.state.items()})

    def _named_params(self) -> tuple[list[Hashable], list[np.ndarray]]:
        held = self.optimizer._held
        return [n for names in held.names for n in names], [p for params in held.params for p in params]

    def _check_slow(self, names: list[Hashable], params: list[np.ndarray]) -> dict[Hashable, np.ndarray]:
        """The slow weights the next plan uses: ``slow`` as the user left it, replaced arrays
        validated, new parameters' slow weights started as copies; anything else refused."""
        known = set(names)
        for name in self._slow:
            if name not in known:
                raise ValueError(f"slow has an entry for {name!r}, which is not a parameter of this optimizer")
        slow: dict[Hashable, np.ndarray] = {}
        replaced = False
        for name, param in zip(names, params):
            array = dict.get(self._slow, name)
            if array is None:
                if name in self._sync_slow:
                    raise ValueError(f"slow lacks {name!r}; to restart its slow weights, assign a copy of the "
                                     "parameter: slow[name] = param.astype(np.float32) for a bfloat16 parameter, "
                                     "else param.copy()")
                array = state_like(param, compute_dtype(param))
                np.copyto(array, param)
            elif array is not self._sync_slow.get(name):
                check_state_array(f"slow[{name!r}]", array, param, _slow_storage(param))
                replaced = True
            slow[name] = array
        if replaced:
            check_disjoint([f"params[{n!r}]" for n in names] + [f"slow[{n!r}]" for n in names],
                           params + [slow[n] for n in names])
        return slow

    def _plan(self, names: list[Hashable], params: list[np.ndarray], slow: Mapping[Hashable, np.ndarray],
              alpha: float) -> Any:
        plan = Plan("lookahead", params, [[slow[n]] for n in names], [0] * len(params), names, 1, ["slow"],
                    [[None, None] for _ in params], [_slow_storage(p) for p in params], [])
        plan.set_rounding(False, 0, False)  # a bfloat16 parameter takes its slow weight's nearest value
        plan.set_hyper(0, [alpha])
        return plan

    def _rebuild_sync(self) -> None:
        """A sync plan for the inner optimizer's parameters as they are now; nothing changes on error."""
        edited = self._edits.arrays
        self._edits.arrays = False
        try:
            names, params = self._named_params()
            slow = self._check_slow(names, params)
            plan = self._plan(names, params, slow, self._alpha)
        except BaseException:
            self._edits.arrays = self._edits.arrays or edited
            raise
        self._commit_sync(plan, params, slow)

    def _commit_sync(self, plan: Any, params: list[np.ndarray], slow: dict[Hashable, np.ndarray]) -> None:
        self._sync, self._sync_params, self._sync_slow = plan, tuple(params), dict(slow)
        self._sync_checked = None
        if not _same_arrays(self._slow, slow):
            dict.clear(self._slow)
            dict.update(self._slow, slow)

    def _sync_is_current(self) -> bool:
        if self._edits.arrays:
            return False
        params = self.optimizer._held.params
        if params is self._sync_checked:  # the inner optimizer kept its arrays since the last check: no allocation
            return True
        current = tuple(p for group in params for p in group)
        same = len(current) == len(self._sync_params) and all(a is b for a, b in zip(current, self._sync_params))
        self._sync_checked = params if same else None
        return same

    def step(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None] | None = None, *,
             grad_scale: float | None = None) -> StepInfo:
        """One step of the inner optimizer (`grads` and `grad_scale` as :meth:`Optimizer.step`);
        every k-th step it takes also pulls both weights together. Returns the inner step's
        :class:`StepInfo`."""
        if grads is None and grad_scale is not None:
            self.optimizer.step(None, grad_scale=grad_scale)  # raises, with the inner optimizer's message
        mult = 1.0 if grad_scale is None else check_grad_scale(grad_scale)
        inner = self.optimizer
        return self._step(grads, mult, inner.max_grad_norm, inner.skip_nonfinite)

    def _step(self, grads: Any, grad_mult: float, max_norm: float | None, skip_nonfinite: bool) -> StepInfo:
        with self._lock:
            if not self._sync_is_current():
                self._rebuild_sync()  # refuses a bad edit of `slow` before the inner step changes anything
            inner = self.optimizer
            syncs = (self._steps + 1) % self._k == 0
            info = inner._step(grads, grad_mult, max_norm, skip_nonfinite, update_ema=not syncs)
            if info.skipped:
                return info
            self._steps += 1
            if syncs:
                if not self._sync_is_current():  # the inner optimizer gained parameters meanwhile
                    self._rebuild_sync()
                self._sync.apply()
                if inner.ema_decay is not None:
                    inner._built_plan().update_ema()  # of the weights the user holds now
            return info

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        with self._lock:
            self.optimizer.add_param_group(param_group)
            self._rebuild_sync()

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            if not self._sync_is_current():
                self._rebuild_sync()
            slow = {n: a.copy(order="K") for n, a in self._sync_slow.items()}
            return {"optimizer": self.optimizer.state_dict(), "slow": slow,
                    "steps": self._steps, "k": self._k, "alpha": self._alpha}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; everything is checked, and the new plans built,
        before anything changes."""
        with self._lock, self.optimizer._lock:
            self.optimizer._refuse_inside_step("load_state_dict")
            self.optimizer._refuse_swapped("load_state_dict")
            keys = {"optimizer", "slow", "steps", "k", "alpha"}
            if not isinstance(state_dict, Mapping) or not keys <= state_dict.keys():
                raise TypeError("state_dict must be a dict with 'optimizer', 'slow', 'steps', 'k' and 'alpha'")
            k = check_int("state_dict['k']", state_dict["k"], low=1)
            alpha = check_real("state_dict['alpha']", state_dict["alpha"], low=0.0, high=1.0)
            steps = check_int("state_dict['steps']", state_dict["steps"], low=0)
            names, params = self._named_params()
            saved = state_dict["slow"]
            if not isinstance(saved, Mapping):
                raise TypeError(f"state_dict['slow'] must be a dict, got {type(saved).__name__}")
            if set(saved) != set(names):
                raise ValueError("state_dict['slow'] does not name the same parameters as the optimizer")
            slow: dict[Hashable, np.ndarray] = {}
            for name, param in zip(names, params):
                value = saved[name]
                label = f"state_dict['slow'][{name!r}]"
                if not isinstance(value, np.ndarray):
                    raise TypeError(f"{label} must be a numpy.ndarray, got {type(value).__name__}")
                if value.dtype != compute_dtype(param) or value.shape != param.shape:
                    raise ValueError(f"{label} must be an array of the parameter's shape and dtype (float32 for a "
                                     "bfloat16 parameter)")
                slow[name] = state_like(param, compute_dtype(param))
                np.copyto(slow[name], value, casting="no")
            self.optimizer._check_structure()
            checked = self.optimizer._check_state_dict(state_dict["optimizer"])
            extras = self.optimizer._check_saved_extras(state_dict["optimizer"])
            plan = self._plan(names, params, slow, alpha)
            state_format = self.optimizer._loaded_format(state_dict["optimizer"])
            self.optimizer._load(checked, extras, state_format)  # the last step that can fail
            self._commit_sync(plan, params, slow)
            self._edits.arrays = False
            self._k, self._steps, self._alpha = k, steps, alpha

    # ---- copies ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            if not self._sync_is_current():
                self._rebuild_sync()
            return {"optimizer": self.optimizer, "slow": dict(self._sync_slow), "steps": self._steps,
                    "k": self._k, "alpha": self._alpha}

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        self.optimizer = saved["optimizer"]
        self._k, self._alpha, self._steps = saved["k"], saved["alpha"], saved["steps"]
        self._start_empty()
        self._slow = SlotDict(saved["slow"], self._edits)
        self._sync_slow = dict(saved["slow"])  # as held: the copy's own arrays, taken as they are
        self._rebuild_sync()

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}(k={self._k}, alpha={self._alpha},\n{inner}\n)"


class Ranger(Lookahead):
    r"""Ranger (Wright, 2019): exactly ``Lookahead(RAdam(params, lr, betas, eps, weight_decay), k, alpha)``.

    Every step is RAdam's (Liu et al., 2020; see :class:`RAdam`) on the fast weights θ; every k
    steps, Lookahead's (Zhang et al., 2019) synchronisation with the slow weights φ:

    .. math::
        \theta_t &\leftarrow \operatorname{RAdam}(\theta_{t-1}, g_t) \\
        \phi &\leftarrow \phi + \alpha\,(\theta_t - \phi),\quad \theta_t \leftarrow \phi
            \quad\text{when } k \text{ divides } t

    Defaults follow the original Ranger: lr 1e-3, betas (0.95, 0.999), eps 1e-5, k 6, alpha 0.5;
    RAdam's rectification threshold is torch's (ρ_t > 5), which is Ranger's too.

    Args:
        params: arrays, a dict name -> array, or a list of group dicts.
        lr: RAdam's learning rate γ, >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.95, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-5).
        weight_decay: L2 penalty λ, >= 0 (default 0.0).
        k: inner steps between synchronisations, an integer >= 1 (default 6).
        alpha: slow-weights step size α, in [0, 1] (default 0.5).
        options: the options every optimizer takes (max_grad_norm, ema_decay, state_dtype, ...; see Optimizer).

    Example:
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Ranger([w], lr=0.1)
        >>> info = opt.step([np.ones(3, dtype=np.float32)])
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5, **options: Any) -> None:
        read_step_options("Ranger", options)  # its own name in the message, not RAdam's
        super().__init__(RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **options), k=k,
                         alpha=alpha)
