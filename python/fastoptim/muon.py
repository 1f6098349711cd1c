"""Muon (Jordan et al. 2024), as torch.optim.Muon implements it, and its usual pairing with AdamW."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from ._core import decay_and_subtract, muon_momentum
from ._per_array import Guard, PerArrayOptimizer, measure_and_clip
from ._step_options import StepInfo, check_grad_scale
from ._validation import check_bool, check_disjoint, check_int, check_real, check_tuple

__all__ = ["Muon", "MuonWithAdamW", "newton_schulz", "split_for_muon"]

_ADJUSTMENTS = (None, "original", "match_rms_adamw")


def newton_schulz(update: np.ndarray, norm: float, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> np.ndarray:
    """torch's ``_zeropower_via_newtonschulz`` in `update`'s dtype (torch 2.13 runs it in
    bfloat16): X = update/max(‖update‖, eps), transposed to be wide, then `steps` times
    A = X·Xᵀ, B = b·A + c·A·A, X = a·X + B·X. `norm` is ‖update‖, measured by the caller.
    The products go through NumPy's BLAS, whose bits may depend on its threads and CPU."""
    a, b, c = coefficients
    tall = update.shape[0] > update.shape[1]
    x = np.divide(update.T if tall else update, update.dtype.type(max(norm, eps)))
    for _ in range(steps):
        gram = x @ x.T
        mixed = gram @ gram
        mixed *= update.dtype.type(c)
        mixed += update.dtype.type(b) * gram
        x_next = mixed @ x
        x_next += update.dtype.type(a) * x
        x = x_next
    result: np.ndarray = x.T if tall else x
    return result


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """torch's ``_adjust_lr``: the step size for a rows × cols update."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))


def split_for_muon(params: Mapping[Hashable, np.ndarray]) -> tuple[dict[Hashable, np.ndarray],
                                                                    dict[Hashable, np.ndarray]]:
    """The usual split of a model's parameters (a dict name -> array): 2-D arrays for Muon, the
    rest (biases, gains, scalars: ndim != 2) for AdamW. Embedding tables and output heads are
    2-D too; move them to the second dict yourself where you train them with AdamW."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict name -> array, got {type(params).__name__}")
    matrices = {n: p for n, p in params.items() if np.ndim(p) == 2}
    return matrices, {n: p for n, p in params.items() if n not in matrices}


class Muon(PerArrayOptimizer):
    r"""Muon: momentum orthogonalized by a Newton–Schulz iteration (Jordan et al. 2024), with
    torch.optim.Muon's semantics and defaults (the oracle of the tests), for 2-D parameters only:
    give the others to AdamW (:func:`split_for_muon`, :class:`MuonWithAdamW`).

    With ``g`` the gradient, μ = `momentum` and (a, b, c) = `ns_coefficients`::

        B ← lerp(B, g, 1 − μ)                      (momentum_buffer)
        U = lerp(g, B, μ) if nesterov else B
        O = NS⁽ᵃᵇᶜ⁾ₖ(U / max(‖U‖, eps))            (k = ns_steps, on U or Uᵀ, whichever is wide:
                                                    X ← a·X + (b·XXᵀ + c·(XXᵀ)²)·X)
        p ← p·(1 − lr·weight_decay) − lr·s·O
        s = √max(1, rows/cols) (None or "original", Keller Jordan's) or 0.2·√max(rows, cols)
            ("match_rms_adamw", Moonshot's)

    torch 2.13 runs the iteration in bfloat16; this one runs in the parameter's dtype, so it
    follows torch's algorithm more closely than torch's own rounding does (the tests compare
    with torch's algorithm without that cast at 1e-5, and with torch as shipped on the total
    displacement). The momentum and the final update are native passes (the same bits on
    every target); the matrix products are NumPy's BLAS: the bits are the same across runs for
    a fixed BLAS build, thread count and CPU, not across them.

    Args:
        params: 2-D float32 or float64 C-order arrays, a dict of them, or group dicts.
        lr: the step size (default 1e-3); weight_decay: decoupled, scaled by lr (default 0.1);
        momentum: μ (default 0.95); nesterov: default True; ns_coefficients: (a, b, c),
        default (3.4445, -4.775, 2.0315); eps: the norm's floor (default 1e-7); ns_steps: k,
        in [0, 100) (default 5); adjust_lr_fn: None, "original" or "match_rms_adamw".
        options: ``max_grad_norm``, ``skip_nonfinite``, ``foreach``/``fused`` (ignored).
    """

    def __init__(self, params: Any, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                      adjust_lr_fn=adjust_lr_fn), **options)

    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        check_real("lr", group.get("lr"), low=0.0)
        check_real("weight_decay", group.get("weight_decay"), low=0.0)
        check_real("momentum", group.get("momentum"), low=0.0)
        check_bool("nesterov", group.get("nesterov"))
        coefficients = group.get("ns_coefficients", ())
        check_tuple("ns_coefficients", coefficients, 3)
        for i, value in enumerate(coefficients):
            check_real(f"ns_coefficients[{i}]", value)
        check_real("eps", group.get("eps"), low=0.0)
        check_int("ns_steps", group.get("ns_steps"), low=0, high=99)
        if group.get("adjust_lr_fn") not in _ADJUSTMENTS:
            raise ValueError(f"adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got "
                             f"{group.get('adjust_lr_fn')!r}")

    def _check_param(self, label: str, param: np.ndarray) -> None:
        if param.ndim != 2:
            raise ValueError(f"{label} has shape {param.shape}; Muon orthogonalizes 2-D parameters only: give the "
                             "others to AdamW (fastoptim.split_for_muon(params), or fastoptim.MuonWithAdamW)")

    def _new_state(self, param: np.ndarray, group: Mapping[str, Any]) -> dict[str, Any]:
        return {"momentum_buffer": np.zeros_like(param)}

    def _state_shapes(self, param: np.ndarray) -> dict[str, tuple[int, ...]]:
        return {"momentum_buffer": param.shape}

    def _step_array(self, group: Mapping[str, Any], param: np.ndarray, grad: np.ndarray, mult: float,
                    state: dict[str, Any], guards: list[Guard]) -> None:
        if param.size == 0:
            return
        update = np.empty_like(param)
        update_sq = muon_momentum(grad, mult, state["momentum_buffer"], update, float(group["momentum"]),
                                  bool(group["nesterov"]), guards)
        a, b, c = (float(x) for x in group["ns_coefficients"])
        ortho = newton_schulz(update, math.sqrt(update_sq), (a, b, c), int(group["ns_steps"]), float(group["eps"]))
        lr = float(group["lr"])
        decay_and_subtract(param, np.ascontiguousarray(ortho), 1.0 - lr * float(group["weight_decay"]),
                           adjusted_lr(lr, group["adjust_lr_fn"], param.shape), guards)


class MuonWithAdamW:
    """Muon on a model's 2-D arrays and AdamW on the rest (:func:`split_for_muon`), stepped
    together: the usual way to train with Muon. ``.muon`` and ``.adamw`` are the two
    optimizers (``.adamw`` is None when every array is 2-D); ``param_groups`` lists Muon's
    groups then AdamW's, so one LR scheduler drives both (each group from its own initial lr).

    ``max_grad_norm`` and ``skip_nonfinite`` measure the gradients of both halves together, as
    one optimizer would; every other keyword option goes to both halves, so what Muon cannot do
    (``state_dtype``, ``ema_decay``) is refused rather than applied to half the model. A step
    checks both halves' gradients before either moves.
    """

    def __init__(self, params: Mapping[Hashable, np.ndarray], lr: float = 0.02, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315), eps: float = 1e-7,
                 ns_steps: int = 5, adjust_lr_fn: str | None = None, *, adamw_lr: float = 3e-4,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 0.01, max_grad_norm: float | None = None, skip_nonfinite: bool = False,
                 **options: Any) -> None:
        from .adam import AdamW  # the element-wise house, for the other half
        matrices, others = split_for_muon(params)
        if not matrices:
            raise ValueError("params holds no 2-D array for Muon; use AdamW alone")
        check_disjoint([f"params[{n!r}]" for n in params], list(params.values()))  # the halves check only their own
        self.muon = Muon(matrices, lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn,
                         max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite, **options)
        self.adamw = AdamW(others, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps, weight_decay=adamw_weight_decay,
                           **options) if others else None

    @property
    def max_grad_norm(self) -> float | None:
        """Clip both halves' gradients by their joint global 2-norm (None: no clipping)."""
        return self.muon.max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self.muon.max_grad_norm = value

    @property
    def skip_nonfinite(self) -> bool:
        """A step whose gradients (either half's) hold a NaN or an infinity changes nothing."""
        return self.muon.skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        self.muon.skip_nonfinite = value

    @property
    def param_groups(self) -> list[Any]:
        return list(self.muon.param_groups) + (list(self.adamw.param_groups) if self.adamw is not None else [])

    def _split(self, grads: Any) -> tuple[dict[Hashable, Any], dict[Hashable, Any]]:
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a dict name -> array, as params, got {type(grads).__name__}")
        muon_names = set(self.muon.state)
        adamw_names = set(self.adamw.state) if self.adamw is not None else set()
        unknown = [n for n in grads if n not in muon_names and n not in adamw_names]
        if unknown:
            raise ValueError(f"grads has {unknown[0]!r}, which is not a parameter of this optimizer")
        return ({n: g for n, g in grads.items() if n in muon_names},
                {n: g for n, g in grads.items() if n in adamw_names})

    def step(self, grads: Mapping[Hashable, np.ndarray | None], *, grad_scale: float | None = None) -> StepInfo:
        """Step both halves from `grads` (a dict with every name of `params`; a None gradient
        leaves its parameter alone)."""
        mult = check_grad_scale(grad_scale)
        matrices, others = self._split(grads)
        self.muon._check_step(matrices)
        if self.adamw is not None:
            self.adamw._check_step(others)
        self._check_apart(grads)
        info, mult = measure_and_clip(list(grads.values()), mult, self.muon.max_grad_norm, self.muon.skip_nonfinite)
        if info.skipped:
            return info
        self.muon._step(matrices, mult, None, False)
        if self.adamw is not None:
            self.adamw._step(others, mult, None, False)
        return info

    def _check_apart(self, grads: Mapping[Hashable, Any]) -> None:
        """No gradient shares memory with the other half's parameters or state (each half checks
        its own)."""
        labels, arrays = [], []
        for half in (self.muon, self.adamw):
            if half is None:
                continue
            for group in half.param_groups:
                for name, param in zip(group["param_names"], group["params"]):
                    labels.append(f"params[{name!r}]")
                    arrays.append(param)
                    state = [(k, v) for k, v in half.state[name].items() if isinstance(v, np.ndarray)]
                    labels += [f"state[{name!r}][{k!r}]" for k, _ in state]
                    arrays += [v for _, v in state]
        present = {n: g for n, g in grads.items() if g is not None}
        check_disjoint(labels + [f"grads[{n!r}]" for n in present], arrays + list(present.values()))

    def state_dict(self) -> dict[str, Any]:
        """``{"muon": ..., "adamw": ...}``: each half's state dict."""
        return {"muon": self.muon.state_dict(), "adamw": None if self.adamw is None else self.adamw.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; both halves are checked before either changes."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"muon", "adamw"}:
            raise TypeError("state_dict must be a dict with 'muon' and 'adamw', as state_dict() returns")
        self.muon._load_state_dict(state_dict["muon"], commit=False)
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])
        elif state_dict["adamw"] is not None:
            raise ValueError("state_dict['adamw'] holds state, but this optimizer has no array for AdamW")
        self.muon.load_state_dict(state_dict["muon"])
