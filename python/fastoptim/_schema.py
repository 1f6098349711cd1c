"""Each native rule's schema, declared once in its C++ header and read here from ``_core.rules()``.

A rule's fields are its hyper-parameters in the order of the native row, each with the group
key Python keeps it under (``"eps"``, or ``"betas[0]"`` for an element of a tuple), its default
(torch's, where torch has the rule) and its valid range. Its slots are its state arrays, each
with the field whose nonzero value makes it exist. From these the optimizers build each group's
checks, its row of doubles and its list of state arrays; no rule writes them by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from ._core import rules, step_passes
from ._validation import check_bool, check_real, check_tuple

_ELEMENT = re.compile(r"^(\w+)\[(\d+)\]$")


@dataclass(frozen=True)
class Field:
    name: str  # the member of the rule's C++ Hyper
    key: str  # where a group keeps it: "eps", or "betas[0]"
    base: str  # the group key holding it: "eps", or "betas"
    element: int | None  # its place in the tuple under `base`, or None
    default: float
    is_flag: bool
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    fallback: str | None  # the key read when a group lacks `key`

    def read(self, group: Mapping[str, Any]) -> Any:
        if self.fallback is not None and self.base not in group:
            return group[self.fallback]
        value = group[self.base]
        return value if self.element is None else value[self.element]

    def check(self, value: Any) -> None:
        if self.is_flag:
            check_bool(self.key, value)
        else:
            check_real(self.key, value, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open)


@dataclass(frozen=True)
class Slot:
    name: str
    needed_when: str | None  # the field whose nonzero value makes this slot exist, or None: always
    seeded: bool  # a fresh group's first step writes it without reading it
    shape: str
    nonnegative: bool = False  # never below zero (a second moment): 8-bit state codes it unsigned


@dataclass(frozen=True)
class Schema:
    rule: str
    fields: tuple[Field, ...]
    slots: tuple[Slot, ...]

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    @property
    def seeded_slots(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots if s.seeded)

    @property
    def signed_slots(self) -> frozenset[str]:
        """The slots whose values may be negative (8-bit state codes them with a sign)."""
        return frozenset(s.name for s in self.slots if not s.nonnegative)

    @cached_property  # read at every group check: derived once
    def tuple_lengths(self) -> dict[str, int]:
        """The group keys that hold tuples, and their lengths."""
        lengths: dict[str, int] = {}
        for f in self.fields:
            if f.element is not None:
                lengths[f.base] = max(lengths.get(f.base, 0), f.element + 1)
        return lengths

    def defaults(self) -> dict[str, Any]:
        """The group keys with their defaults, as Python spells them (tuples, bools)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value: Any = bool(f.default) if f.is_flag else f.default
            if f.element is None:
                out[f.base] = value
            else:
                out[f.base] = (*out.get(f.base, ()), value)
        return out

    def check(self, group: Mapping[str, Any]) -> None:
        """TypeError/ValueError naming the first field of `group` (in row order) out of its range.

        A field read from its fallback key is left to the rule's own checks (AdaBound's
        initial_lr)."""
        lengths = self.tuple_lengths
        checked_tuples: set[str] = set()
        for f in self.fields:
            if f.fallback is not None and f.base not in group:
                continue
            if f.element is not None and f.base not in checked_tuples:
                check_tuple(f.base, group[f.base], lengths[f.base])
                checked_tuples.add(f.base)
            f.check(f.read(group))

    def row(self, group: Mapping[str, Any]) -> list[float]:
        """The group as the native rule's row of doubles."""
        return [float(f.read(group)) for f in self.fields]

    def passes(self, group: Mapping[str, Any], rule: str | None = None) -> tuple[tuple[int, int], ...]:
        """(arrays read, arrays written) per element, for each sweep of a step of `group`, by this
        schema's rule or by `rule`, which shares it (a cautious variant)."""
        return tuple(step_passes(rule or self.rule, len(self.needed_slots(group))))

    def needed_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays a group with these settings uses."""
        values = {f.name: f.read(group) for f in self.fields}
        return tuple(s.name for s in self.slots if s.needed_when is None or values[s.needed_when] != 0)


def _bound(value: float) -> float | None:
    return None if math.isinf(value) else value


@cache
def schema_of(rule: str) -> Schema:
    info = rules()[rule]
    fields = []
    for f in info["fields"]:
        match = _ELEMENT.match(f["key"])
        base, element = (match.group(1), int(match.group(2))) if match else (f["key"], None)
        fields.append(Field(f["name"], f["key"], base, element, f["default"], f["kind"] == "flag", _bound(f["low"]),
                            _bound(f["high"]), f["low_open"], f["high_open"], f["fallback"]))
    slots = tuple(Slot(s["name"], s["needed_when"], s["seeded"], s["shape"], s["nonnegative"]) for s in info["slots"])
    return Schema(rule, tuple(fields), slots)
