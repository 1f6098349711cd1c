"""Param groups from what users pass: arrays, a dict name -> array, (name, array) pairs, or a
list of group dicts. One reader for :class:`~fastoptim.Optimizer` and ZeroRedundancyOptimizer,
so that both take the same forms and refuse the same mistakes in the same words."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._validation import check_param_array

__all__ = ["RESERVED", "Group", "raw_groups", "read_group"]

RESERVED = ("params", "param_names")  # a group's entries that are not hyper-parameters


class Group(NamedTuple):
    """One group as the user gave it, checked: its own hyper-parameters, names and arrays."""

    hyper: dict[str, Any]
    names: list[Hashable]
    arrays: list[np.ndarray]


def _named_arrays(params: Any, next_index: int) -> tuple[list[Any], list[Hashable]]:
    """Arrays and their names from a list, a dict name -> array, or (name, array) pairs."""
    if isinstance(params, np.ndarray):
        return [params], [next_index]
    if isinstance(params, Mapping):
        return list(params.values()), list(params.keys())
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"params must be arrays, a dict name -> array or a list of group dicts, got "
                        f"{type(params).__name__}")
    items = list(params)
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items):
        return [a for _, a in items], [n for n, _ in items]
    return items, list(range(next_index, next_index + len(items)))


def raw_groups(params: Any) -> list[Any]:
    """The group dicts in `params`; arrays not in a group dict make one group."""
    if isinstance(params, np.ndarray):
        raise TypeError("params must be an iterable of arrays, a dict name -> array or a list of group "
                        "dicts, not a single array: wrap it in a list")
    if isinstance(params, Mapping) and "params" not in params:
        raws: list[Any] = [{"params": params}]
    elif isinstance(params, Mapping):
        raws = [params]
    else:
        raws = list(params) if isinstance(params, Iterable) else [params]
        if raws and not isinstance(raws[0], Mapping):
            raws = [{"params": raws}]  # the list, not `params`: a generator is spent by now
    if not raws:
        raise ValueError("params is empty: the optimizer has nothing to update")
    return raws


def read_group(raw: Any, earlier: Sequence[Hashable]) -> Group:
    """One group dict, checked beside the parameter names of the groups before it (`earlier`):
    its arrays must be parameters and its names new. Whether the arrays share memory with
    others is the caller's to check, since only it knows every array it holds."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"a param group must be a dict, got {type(raw).__name__}")
    if "params" not in raw:
        raise ValueError("a param group needs a 'params' entry")
    next_index = sum(isinstance(n, int) for n in earlier)  # unnamed arrays are numbered on
    arrays, names = _named_arrays(raw["params"], next_index)
    if "param_names" in raw:
        names = list(raw["param_names"])
        if len(names) != len(arrays):
            raise ValueError("param_names and params differ in length")
    if not arrays:
        raise ValueError("a param group has no parameters")
    for name, array in zip(names, arrays):
        check_param_array(f"params[{name!r}]", array)
    known = set(earlier)
    for name in names:
        if not isinstance(name, Hashable):
            raise TypeError(f"parameter names must be hashable, got {type(name).__name__}")
        if name in known:
            raise ValueError(f"parameter name {name!r} is given twice")
        known.add(name)
    return Group({k: v for k, v in raw.items() if k not in RESERVED}, names, arrays)
