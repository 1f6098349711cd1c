"""Containers users may edit between steps, each telling its optimizer that it was edited.

An optimizer keeps its native plan in step with ``param_groups`` and ``state`` without reading
them at every step: every mutating method of these containers raises a flag, and the next step
re-reads only what a raised flag says may have changed. Hyper-parameter edits (a scheduler's,
at every step) raise ``hyper``, a cheap re-validation of each group; edits of the arrays
(``params`` lists, state entries, the group list) raise ``arrays``, which re-checks every array
against what the plan holds. They pickle and deep-copy as the plain dicts and lists they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsIndex

__all__ = ["Edits", "GroupList", "OptimizerState", "ParamGroup", "ParamList", "SlotDict", "TrackedDict"]

_ARRAY_KEYS = frozenset({"params", "param_names"})


class Edits:
    """What was edited since the optimizer's plan was last brought up to date."""

    __slots__ = ("arrays", "hyper")

    def __init__(self) -> None:
        self.hyper = False
        self.arrays = False

    @property
    def pending(self) -> bool:
        return self.hyper or self.arrays


class TrackedDict(dict[Any, Any]):
    """A dict whose every mutation marks `edits` (``arrays`` unless `_mark` says otherwise)."""

    __slots__ = ("_edits",)

    def __init__(self, data: Any, edits: Edits) -> None:
        super().__init__(data)
        self._edits = edits

    def _mark(self, key: Any = None) -> None:
        self._edits.arrays = True

    def _mark_all(self) -> None:
        self._edits.hyper = self._edits.arrays = True

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._mark(key)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._mark(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    # Each marks after it mutates: a step that clears the flag and then reads sees the edit,
    # or the flag is raised again for the next step.
    def pop(self, key: Any, *default: Any) -> Any:
        value = super().pop(key, *default)
        self._mark_all()
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self._mark_all()
        return item

    def clear(self) -> None:
        super().clear()
        self._mark_all()

    # mypy wants an in-place operator to repeat the overloads of dict.__or__ (list.__add__
    # below), which would narrow what `other` may be: these take whatever update/extend take.
    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickles and deep-copies as a plain dict
        return (dict, (dict(self),))


class ParamGroup(TrackedDict):
    """One parameter group: torch's dict of hyper-parameters plus ``params`` and ``param_names``.

    Edit its hyper-parameters freely between steps (``group["lr"] = 0.01``): the next step
    validates them and uses them. Its arrays are fixed: a step after ``params`` or
    ``param_names`` was changed raises ValueError and changes nothing (add parameters with
    :meth:`Optimizer.add_param_group`).
    """

    __slots__ = ()

    def _mark(self, key: Any = None) -> None:
        if key in _ARRAY_KEYS:
            self._edits.arrays = True
        else:
            self._edits.hyper = True


class SlotDict(TrackedDict):
    """One parameter's state: slot name -> array."""

    __slots__ = ()


class OptimizerState(TrackedDict):
    """``optimizer.state``: parameter name -> :class:`SlotDict`. A dict assigned to an entry is
    stored as a SlotDict holding the same arrays, so later edits of the entry are seen too."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, Mapping) and not (isinstance(value, SlotDict) and value._edits is self._edits):
            value = SlotDict(value, self._edits)
        super().__setitem__(key, value)


class TrackedList(list[Any]):
    """A list whose every mutation marks ``arrays``."""

    __slots__ = ("_edits",)

    def __init__(self, data: Any, edits: Edits) -> None:
        super().__init__(data)
        self._edits = edits

    def _mark(self) -> None:
        self._edits.arrays = True

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._mark()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._mark()

    def __iadd__(self, other: Any) -> TrackedList:  # type: ignore[misc]  # see TrackedDict.__ior__
        super().__iadd__(other)
        self._mark()
        return self

    def __imul__(self, count: SupportsIndex) -> TrackedList:
        super().__imul__(count)
        self._mark()
        return self

    def append(self, value: Any) -> None:
        super().append(value)
        self._mark()

    def extend(self, values: Any) -> None:
        super().extend(values)
        self._mark()

    def insert(self, index: SupportsIndex, value: Any) -> None:
        super().insert(index, value)
        self._mark()

    def pop(self, index: SupportsIndex = -1) -> Any:
        value = super().pop(index)
        self._mark()
        return value

    def remove(self, value: Any) -> None:
        super().remove(value)
        self._mark()

    def clear(self) -> None:
        super().clear()
        self._mark()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().sort(*args, **kwargs)
        finally:  # a failed sort may have moved elements
            self._mark()

    def reverse(self) -> None:
        super().reverse()
        self._mark()

    def __reduce__(self) -> tuple[Any, ...]:  # pickles and deep-copies as a plain list
        return (list, (list(self),))


class ParamList(TrackedList):
    """A group's ``params`` or ``param_names``."""

    __slots__ = ()


class GroupList(TrackedList):
    """``optimizer.param_groups``."""

    __slots__ = ()
