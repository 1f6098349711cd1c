"""State dicts between fastoptim's NumPy layout and torch's.

fastoptim (the engine's ``state_dict``): ``{"state": {name: {"step": int, <scalar>: float,
<slot>: array}}, "param_groups": [{..., "params": [names]}], "state_format"?, "ema"?}``.
torch: ``{"state": {id: {"step": tensor, <scalar>: tensor, <slot>: tensor}}, "param_groups":
[{..., "params": [ids]}]}``. The engine names its parameters by torch's ids, so only the values
change: arrays become tensors of the parameter's shape and memory order, counts and running
scalars 0-d tensors (``step`` float32, as torch, but an int for SparseAdam, as torch's: its bias
correction would round in float32 otherwise; scalars float64, which keeps them exact).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._tensors import array_of, tensor_of

__all__ = ["from_torch", "plain", "to_torch"]

_EXTRAS = ("ema", "accumulated")  # the engine's per-parameter arrays beside the state


def plain(value: Any) -> Any:
    """A hyper-parameter as the engine takes it: a one-element tensor (torch allows lr=tensor, and
    its schedulers fill_() it) as a float, a list or tuple (betas) as a tuple of such."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"a hyper-parameter tensor must hold one value, got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    return value


def _axes(array: np.ndarray, order: tuple[int, ...]) -> tuple[int, ...]:
    """The parameter's axis order for an array of its shape; none for an 8-bit state's absmax."""
    return order if array.ndim == len(order) else ()


def _all_zero(entry: Mapping[str, Any]) -> bool:
    return all(not isinstance(v, np.ndarray) or not v.any() for v in entry.values())


def to_torch(saved: Mapping[str, Any], groups: Sequence[Mapping[str, Any]],
             orders: Sequence[tuple[int, ...]], step_tensor: bool = True) -> dict[str, Any]:
    """The engine's state dict `saved` in torch's layout, with torch's `groups`' entries; `step`
    a float32 tensor, or (`step_tensor` False: torch's SparseAdam) an int."""
    state: dict[int, dict[str, Any]] = {}
    for name, entry in saved["state"].items():
        if entry.get("step") == 0 or ("step" not in entry and _all_zero(entry)):
            continue  # as torch: no state for a parameter that never stepped (for Muon, which counts no
            # steps: state all zeros, which is what torch's first step starts from)
        order = orders[name]
        converted: dict[str, Any] = {}
        if "step" in entry:  # not for Muon, which counts no steps (as torch's)
            steps = int(entry["step"])
            converted["step"] = torch.tensor(float(steps), dtype=torch.float32) if step_tensor else steps
        for key, value in entry.items():
            if key == "step":
                continue
            if isinstance(value, np.ndarray):
                converted[key] = tensor_of(value, _axes(value, order))
            else:
                converted[key] = torch.tensor(float(value), dtype=torch.float64)
        state[name] = converted
    param_groups = []
    for group, saved_group in zip(groups, saved["param_groups"]):
        entry = {k: v for k, v in group.items() if k != "params"}
        entry["params"] = list(saved_group["params"])
        param_groups.append(entry)
    result: dict[str, Any] = {"state": state, "param_groups": param_groups}
    if "state_format" in saved:
        result["state_format"] = dict(saved["state_format"])
    for key in _EXTRAS:
        if key in saved:
            extra = dict(saved[key])
            extra["arrays"] = {n: tensor_of(a, _axes(a, orders[n])) for n, a in extra["arrays"].items()}
            result[key] = extra
    return result


def _number(label: str, value: Any) -> Any:
    """The number a one-element tensor holds; anything else as given, for the engine's checks."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{label} must hold one number, got a tensor of shape {tuple(value.shape)}")
        return value.item()
    return value


def _count(label: str, value: Any) -> Any:
    """A saved step count (torch keeps it as a float tensor) as an int; anything else as given,
    for the engine's checks to refuse."""
    value = _number(label, value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{label} must be a whole number of steps, got {value!r}")
        return int(value)
    return value


def _scalar(label: str, value: Any) -> Any:
    """A saved running scalar (NAdam's mu_product, ASGD's eta) as a float where it is a tensor."""
    return float(_number(label, value)) if isinstance(value, torch.Tensor) else value


def from_torch(state_dict: Any, groups: Sequence[Mapping[str, Any]], orders: Sequence[tuple[int, ...]],
               hyper_keys: Sequence[str], scalar_names: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A state dict in torch's layout (fastoptim.torch's, or torch.optim's for the same rule) as the
    engine's, and the entries each torch group takes from it. Saved ids map to ours by order, as
    torch maps them; shapes, dtypes and values are left to the engine's checks."""
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= state_dict.keys():
        raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_groups, (list, tuple)) or not all(isinstance(g, Mapping) for g in saved_groups):
        raise TypeError("state_dict['param_groups'] must be a list of dicts")
    if not isinstance(saved_state, Mapping):
        raise TypeError(f"state_dict['state'] must be a dict, got {type(saved_state).__name__}")
    if len(saved_groups) != len(groups):
        raise ValueError(f"state_dict has {len(saved_groups)} param groups; the optimizer has {len(groups)}")
    ids: dict[Any, int] = {}
    numpy_groups, torch_groups = [], []
    for index, (group, saved) in enumerate(zip(groups, saved_groups)):
        saved_ids = saved.get("params")
        if not isinstance(saved_ids, (list, tuple)) or len(saved_ids) != len(group["params"]):
            raise ValueError(f"state_dict['param_groups'][{index}] holds {len(saved_ids or ())} parameters; the "
                             f"optimizer's group holds {len(group['params'])}")
        ours = list(range(len(ids), len(ids) + len(saved_ids)))
        for saved_id, our_id in zip(saved_ids, ours):
            if saved_id in ids:
                raise ValueError(f"state_dict['param_groups'] lists parameter {saved_id!r} twice")
            ids[saved_id] = our_id
        numpy_groups.append({**{k: plain(saved[k]) for k in hyper_keys if k in saved}, "params": ours})
        torch_groups.append({k: v for k, v in saved.items() if k not in ("params", "param_names")})
    state: dict[int, dict[str, Any]] = {}
    for saved_id, entry in saved_state.items():
        if saved_id not in ids:
            raise ValueError(f"state_dict['state'] has an entry for {saved_id!r}, which no param group lists")
        our_id = ids[saved_id]
        label = f"state_dict['state'][{saved_id!r}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{label} must be a dict, got {type(entry).__name__}")
        converted: dict[str, Any] = {}
        for key, value in entry.items():
            where = f"{label}[{key!r}]"
            if value is None:
                continue  # torch's SGD saves momentum_buffer None where momentum is 0
            if key == "step":
                converted[key] = _count(where, value)
            elif key in scalar_names:
                converted[key] = _scalar(where, value)
            else:
                converted[key] = array_of(where, value, orders[our_id])
        if "step" not in converted:  # torch's SGD counts no steps: state it holds has been stepped
            converted["step"] = 1 if len(converted) else 0
        for name in scalar_names:  # torch's ASGD keeps eta and mu; the engine also this step's, which it rewrites
            base = name.removesuffix("_now")
            if name not in converted and base != name and base in converted:
                converted[name] = converted[base]
        state[our_id] = converted
    result: dict[str, Any] = {"state": state, "param_groups": numpy_groups}
    if "state_format" in state_dict:
        result["state_format"] = state_dict["state_format"]
    for key in _EXTRAS:
        if key in state_dict:
            extra = state_dict[key]
            if not isinstance(extra, Mapping) or not isinstance(extra.get("arrays"), Mapping):
                raise TypeError(f"state_dict[{key!r}] must be a dict with 'arrays', as state_dict() saves it")
            arrays = {}
            for saved_id, value in extra["arrays"].items():
                if saved_id not in ids:
                    raise ValueError(f"state_dict[{key!r}]['arrays'] has an entry for {saved_id!r}, which no param "
                                     "group lists")
                arrays[ids[saved_id]] = array_of(f"state_dict[{key!r}]['arrays'][{saved_id!r}]", value,
                                                 orders[ids[saved_id]])
            result[key] = {**extra, "arrays": arrays}
    return result, torch_groups
