"""Lookahead (Zhang et al., 2019) around any fastoptim optimizer, and Ranger = Lookahead(RAdam)."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._validation import check_int, check_real
from .adam_variants import RAdam
from .optimizer import Optimizer, ParamGroup

__all__ = ["Lookahead", "Ranger"]


class Lookahead:
    r"""Lookahead (Zhang, Lucas, Hinton & Ba, NeurIPS 2019) around any fastoptim optimizer.
    PyTorch has no Lookahead.

    The slow weights φ start as the parameters θ. Every k steps of the inner optimizer,

    .. math::
        \phi \leftarrow \phi + \alpha\,(\theta - \phi),\qquad \theta \leftarrow \phi

    in one native pass over θ and φ. ``param_groups`` is the inner optimizer's, so schedules
    and edits act on it; ``state_dict()`` holds the inner state, the slow weights and the count.

    Args: optimizer (a fastoptim optimizer), k (5), alpha α (0.5, in [0, 1]).
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastoptim optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self._k = check_int("k", k, low=1)
        self._alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self._lock = threading.Lock()
        self._steps = 0
        self.slow: dict[Hashable, np.ndarray] = {}
        self._build()

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

    @property
    def param_groups(self) -> list[ParamGroup]:
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @property
    def state(self) -> dict[Hashable, dict[str, np.ndarray]]:
        """The inner optimizer's state, with each parameter's slow weights under ``slow``."""
        return {name: {**slots, "slow": self.slow[name]} for name, slots in self.optimizer.state.items()}

    def _named_params(self) -> tuple[list[Hashable], list[np.ndarray]]:
        groups = self.optimizer.param_groups
        return [n for g in groups for n in g["param_names"]], [p for g in groups for p in g["params"]]

    def _build(self) -> None:
        names, params = self._named_params()
        for name, param in zip(names, params):
            if name not in self.slow:
                self.slow[name] = param.copy(order="K")
        self._sync = _core.Plan("lookahead", params, [[self.slow[n]] for n in names], [0] * len(params), names, 1)
        self._sync.set_hyper(0, [self._alpha])

    def step(self, grads: Mapping[Any, np.ndarray] | Sequence[np.ndarray]) -> None:
        """One step of the inner optimizer; every k-th also pulls both weights together."""
        with self._lock:
            self.optimizer.step(grads)
            self._steps += 1
            if self._steps % self._k == 0:
                self._sync.apply()

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        with self._lock:
            self.optimizer.add_param_group(param_group)
            self._build()

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            slow = {n: a.copy(order="K") for n, a in self.slow.items()}
            return {"optimizer": self.optimizer.state_dict(), "slow": slow,
                    "steps": self._steps, "k": self._k, "alpha": self._alpha}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; everything is checked before anything changes."""
        with self._lock:
            keys = {"optimizer", "slow", "steps", "k", "alpha"}
            if not isinstance(state_dict, Mapping) or not keys <= state_dict.keys():
                raise TypeError("state_dict must be a dict with 'optimizer', 'slow', 'steps', 'k' and 'alpha'")
            k = check_int("k", state_dict["k"], low=1)
            alpha = check_real("alpha", state_dict["alpha"], low=0.0, high=1.0)
            steps = check_int("steps", state_dict["steps"], low=0)
            names, params = self._named_params()
            slow = state_dict["slow"]
            if set(slow) != set(names):
                raise ValueError("state_dict['slow'] does not name the same parameters as the optimizer")
            for name, param in zip(names, params):
                value = slow[name]
                if not isinstance(value, np.ndarray) or value.dtype != param.dtype or value.shape != param.shape:
                    raise ValueError(f"state_dict['slow'][{name!r}] must be an array of the parameter's dtype "
                                     "and shape")
            self.optimizer._check_state_dict(state_dict["optimizer"])  # raises before anything changes
            self.optimizer.load_state_dict(state_dict["optimizer"])
            for name in names:
                np.copyto(self.slow[name], slow[name])
            self._k, self._steps = k, steps
            self._alpha = alpha
            self._sync.set_hyper(0, [alpha])

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}(k={self._k}, alpha={self._alpha},\n{inner}\n)"


class Ranger(Lookahead):
    r"""Ranger (Wright, 2019): exactly ``Lookahead(RAdam(params, lr, betas, eps, weight_decay), k, alpha)``.

    Defaults follow the original Ranger: lr 1e-3, betas (0.95, 0.999), eps 1e-5, k 6, alpha 0.5;
    RAdam's rectification threshold is torch's (ρ_t > 5), which is Ranger's too.
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5) -> None:
        super().__init__(RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), k=k, alpha=alpha)
