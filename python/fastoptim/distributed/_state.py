"""Between a whole optimizer's state dict and the shards of ZeroRedundancyOptimizer.

A shard is the state dict of a rank's local optimizer, whose parameters are pieces
``(name, start, stop)`` of the real ones (elements in memory order). A consolidated state
dict is exactly what ``optimizer_class(params).state_dict()`` gives: both fastoptim formats
are handled, the plain one (``state``, ``param_groups``) and Lookahead's (``optimizer``,
``slow``, ``steps``, ``k``, ``alpha``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core import CODE_BLOCK
from .._state_format import ABSMAX, StateFormat, memory_order, read_saved_format, stored_values
from .._validation import check_absmax, check_dtype_and_shape, is_bfloat16_array
from ._common import flat

__all__ = ["Merger", "Piece", "refuse_pending", "split"]

# (key in the local optimizer, index of the parameter, start, stop)
Piece = tuple[Hashable, int, int, int]


def _lookahead(sd: Any) -> bool:
    return isinstance(sd, Mapping) and "optimizer" in sd and "slow" in sd


def refuse_pending(sd: Any) -> None:
    """A state dict that every rank loads must not hold one rank's accumulated gradients."""
    inner = sd["optimizer"] if _lookahead(sd) else sd
    if isinstance(inner, Mapping) and inner.get("accumulated") is not None:
        raise ValueError("this state dict holds gradients accumulated on one rank since its last step, which the "
                         "other ranks would take as theirs; save it after a step (or save each rank's state "
                         "dict and load it into a plain optimizer)")


class _Cutter:
    """Pieces of the saved arrays in their parameter's memory order, each array flattened once."""

    def __init__(self, names: Sequence[Hashable], params: Sequence[np.ndarray], signed: frozenset[str]) -> None:
        self.names, self.params, self.signed = names, params, signed
        self._flat: dict[int, np.ndarray] = {}
        self._decoded: dict[int, np.ndarray] = {}  # 8-bit codes' values, flat in their parameter's order

    def __call__(self, value: np.ndarray, p: int, label: str, start: int, stop: int,
                 storage: str = "") -> np.ndarray:
        param = self.params[p]
        check_dtype_and_shape(label, value, param, storage)
        if id(value) not in self._flat:
            self._flat[id(value)] = value.reshape(-1, order=memory_order(param))
        return self._flat[id(value)][start:stop]

    def blocks(self, value: np.ndarray, p: int, label: str, start: int, stop: int) -> np.ndarray:
        """The absmax of the 8-bit blocks of elements [start, stop), which start a block."""
        return check_absmax(label, value, self.params[p], writable=False)[start // CODE_BLOCK:-(-stop // CODE_BLOCK)]

    def entry(self, entry: Mapping[str, Any], name: Hashable, p: int, start: int, stop: int, storage: str,
              signed: frozenset[str] | None) -> dict[str, Any]:
        """A piece of one parameter's saved state stored as `storage`; with `signed` (the slots
        coded with a sign), 8-bit state is decoded into float32 (a piece that cuts its blocks)."""
        where = f"state_dict['state'][{name!r}]"
        out: dict[str, Any] = {}
        for slot, v in entry.items():
            if not isinstance(v, np.ndarray):
                out[slot] = v
            elif storage != "int8":
                out[slot] = self(v, p, f"{where}[{slot!r}]", start, stop, storage)
            elif slot.endswith(ABSMAX):
                if signed is None:
                    out[slot] = self.blocks(v, p, f"{where}[{slot!r}]", start, stop)
            elif signed is None:
                out[slot] = self(v, p, f"{where}[{slot!r}]", start, stop, storage)
            else:
                if id(v) not in self._decoded:  # once for all the pieces of every rank
                    param = self.params[p]
                    check_dtype_and_shape(f"{where}[{slot!r}]", v, param, storage)
                    absmax = check_absmax(f"{where}[{slot + ABSMAX!r}]", entry.get(slot + ABSMAX), param,
                                          writable=False)
                    values = stored_values({slot: v, slot + ABSMAX: absmax}, slot, storage, slot in signed, param)
                    self._decoded[id(v)] = values.reshape(-1, order=memory_order(param))
                out[slot] = self._decoded[id(v)][start:stop]
        return out


def split(sd: Any, names: Sequence[Hashable], params: Sequence[np.ndarray],
          groups: Sequence[Sequence[Hashable]], pieces: Sequence[Sequence[Piece]],
          signed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The shard of a consolidated state dict that the local optimizer holding `pieces`
    (per group) loads. `groups` lists each group's parameter names; `signed`, the rule's slots
    that 8-bit state codes with a sign. Views, not copies (but 8-bit state that the pieces
    would cut mid-block, decoded into float32)."""
    return _split(sd, _Cutter(names, params, signed), groups, pieces)


def _split(sd: Any, cut: _Cutter, groups: Sequence[Sequence[Hashable]],
           pieces: Sequence[Sequence[Piece]]) -> dict[str, Any]:
    if _lookahead(sd):
        slow = sd["slow"]
        if not isinstance(slow, Mapping):
            raise TypeError("state_dict['slow'] must be a dict")
        shard = {}
        for group in pieces:
            for key, p, start, stop in group:
                name = cut.names[p]
                if name in slow:
                    value = slow[name]
                    if not isinstance(value, np.ndarray):
                        raise TypeError(f"state_dict['slow'][{name!r}] must be a numpy.ndarray")
                    shard[key] = cut(value, p, f"state_dict['slow'][{name!r}]", start, stop)
        inner = _split(sd["optimizer"], cut, groups, pieces)
        return {k: inner if k == "optimizer" else shard if k == "slow" else v for k, v in sd.items()}
    if not isinstance(sd, Mapping) or not {"state", "param_groups"} <= sd.keys():
        raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
    saved_groups, saved_state = sd["param_groups"], sd["state"]
    if not isinstance(saved_state, Mapping):
        raise TypeError("state_dict['state'] must be a dict")
    if len(saved_groups) != len(groups):
        raise ValueError(f"state_dict has {len(saved_groups)} param groups; the optimizer has {len(groups)}")
    for index, (saved, names) in enumerate(zip(saved_groups, groups)):
        if not isinstance(saved, Mapping) or list(saved.get("params", ())) != list(names):
            held = list(saved.get("params", ())) if isinstance(saved, Mapping) else saved
            raise ValueError(f"param_groups[{index}] of state_dict holds parameters {held!r}; the optimizer's group "
                             f"holds {list(names)!r}")
    known = set(cut.names)
    for name in saved_state:
        if name not in known:
            raise ValueError(f"state_dict['state'] has an entry for {name!r}, which is not a parameter of this "
                             "optimizer")
    saved_format = read_saved_format(sd)  # the state arrays' layout; the EMA's is the parameters'
    # 8-bit state is cut by blocks where every piece starts one and the codes' blocks run along
    # their parameter's memory order, else decoded (signed: the slots coded with a sign).
    coded = {p for group in pieces for _, p, _, _ in group if saved_format.storage(cut.params[p]) == "int8"}
    cuts_blocks = any(start % CODE_BLOCK or (stop % CODE_BLOCK and stop != cut.params[p].size)
                      for group in pieces for _, p, start, stop in group if p in coded)
    out_of_order = any(isinstance(v, np.ndarray) and memory_order(v) != memory_order(cut.params[p])
                       for p in coded if isinstance(saved_state.get(cut.names[p]), Mapping)
                       for v in saved_state[cut.names[p]].values())
    signed = cut.signed if cuts_blocks or out_of_order else None
    state: dict[Hashable, dict[str, Any]] = {}
    for group in pieces:
        for key, p, start, stop in group:
            name = cut.names[p]
            entry = saved_state.get(name)
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                raise ValueError(f"state_dict['state'][{name!r}] must be a dict with a 'step'")
            state[key] = cut.entry(entry, name, p, start, stop, saved_format.storage(cut.params[p]), signed)
    out_groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": [key for key, *_ in group]}
                  for saved, group in zip(saved_groups, pieces)]
    refuse_pending(sd)
    out: dict[str, Any] = {"state": state, "param_groups": out_groups}
    if signed is not None:  # decoded: float32 state, the layout of a state dict saved without one
        out["state_format"] = StateFormat(None, saved_format.rounding, saved_format.seed).saved()
    elif "state_format" in sd:
        out["state_format"] = sd["state_format"]
    ema = sd.get("ema")
    if ema is not None:  # cut like the state; loading checks the rest
        arrays = ema.get("arrays") if isinstance(ema, Mapping) else None
        if not isinstance(arrays, Mapping):
            raise TypeError("state_dict['ema'] must be a dict with 'updates' and 'arrays', as state_dict() makes it")
        out["ema"] = {**ema, "arrays": {
            key: cut(arrays[cut.names[p]], p, f"state_dict['ema']['arrays'][{cut.names[p]!r}]", start, stop)
            for group in pieces for key, p, start, stop in group if cut.names[p] in arrays}}
    return out


class Merger:
    """Builds a consolidated state dict from the shards of every rank, one shard at a time."""

    def __init__(self, names: Sequence[Hashable], params: Sequence[np.ndarray],
                 groups: Sequence[Sequence[Hashable]]) -> None:
        self.names, self.params, self.groups = names, params, groups
        self.index = {n: i for i, n in enumerate(names)}
        self.result: dict[str, Any] | None = None
        self._flat: dict[int, np.ndarray] = {}

    def add(self, shard: Mapping[str, Any]) -> None:
        if self.result is None:
            self.result = self._skeleton(shard)
        self._fill(shard, self.result)

    def _zeros(self, name: Hashable, dtype: np.dtype | None = None, key: str = "") -> np.ndarray:
        param = self.params[self.index[name]]
        if key.endswith(ABSMAX):  # 8-bit state's blocks
            array = np.zeros(-(-param.size // CODE_BLOCK), np.float32)
        else:
            array = np.zeros_like(param, dtype=dtype)  # dtype: bfloat16 or 8-bit state's
        self._flat[id(array)] = flat(array)
        return array

    def _entry(self, name: Hashable, like: Mapping[str, Any], storage: str) -> dict[str, Any]:
        """Zeroed state of `name` with the slots of `like` (a piece of any parameter of its
        group) stored as `storage`: 8-bit state has uint8 codes and an absmax per slot."""
        param = self.params[self.index[name]]
        entry: dict[str, Any] = {}
        for key, value in like.items():
            if not isinstance(value, np.ndarray):
                entry[key] = value
            elif not key.endswith(ABSMAX):
                dtype = value.dtype if value.dtype != np.uint8 else param.dtype  # a piece's own layout
                dtype = np.dtype(np.uint8) if storage == "int8" else dtype
                entry[key] = self._zeros(name, dtype)
                if storage == "int8":
                    entry[key + ABSMAX] = self._zeros(name, np.dtype(np.float32), key + ABSMAX)
        return entry

    def _skeleton(self, shard: Mapping[str, Any]) -> dict[str, Any]:
        """Scalars, hyper-parameters and zeroed arrays of the right slots, from the first shard."""
        if _lookahead(shard):
            slow = {name: self._zeros(name) for names in self.groups for name in names}
            return {k: self._skeleton(v) if k == "optimizer" else slow if k == "slow" else v for k, v in shard.items()}
        state: dict[Hashable, dict[str, Any]] = {}
        saved_format = read_saved_format(shard)
        for saved, names in zip(shard["param_groups"], self.groups):
            entries = [shard["state"][k] for k in saved["params"] if k in shard["state"]]
            if not entries:
                continue
            for name in names:
                state[name] = self._entry(name, entries[0], saved_format.storage(self.params[self.index[name]]))
        groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": list(names)}
                  for saved, names in zip(shard["param_groups"], self.groups)]
        merged: dict[str, Any] = {"state": state, "param_groups": groups}
        if "state_format" in shard:
            merged["state_format"] = shard["state_format"]
        if "ema" in shard:
            merged["ema"] = {"updates": shard["ema"]["updates"],
                             "arrays": {name: self._zeros(name) for names in self.groups for name in names}}
        return merged

    def _fill(self, shard: Mapping[str, Any], out: dict[str, Any]) -> None:
        if _lookahead(shard):
            self._fill(shard["optimizer"], out["optimizer"])
            for (name, start, stop), value in shard["slow"].items():
                self._flat[id(out["slow"][name])][start:stop] = value.reshape(-1)
            return
        for (name, start, stop), entry in shard["state"].items():
            target = out["state"].get(name)
            if target is None:
                continue
            for slot, value in entry.items():
                if not isinstance(value, np.ndarray):
                    target[slot] = value  # the piece's clock, which is its parameter's
                elif slot in target and slot.endswith(ABSMAX):  # an 8-bit slot's blocks (slot names never end so)
                    self._flat[id(target[slot])][start // CODE_BLOCK:start // CODE_BLOCK + value.size] = value
                elif slot in target:
                    into, piece = self._flat[id(target[slot])][start:stop], value.reshape(-1)
                    if is_bfloat16_array(piece):  # as bits: ranks with and without ml_dtypes merge alike
                        into, piece = into.view(np.uint16), piece.view(np.uint16)
                    into[...] = piece
        if "ema" in shard:
            for (name, start, stop), value in shard["ema"]["arrays"].items():
                self._flat[id(out["ema"]["arrays"][name])][start:stop] = value.reshape(-1)
