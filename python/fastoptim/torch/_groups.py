"""torch's param groups, change-tracked: a step hands the engine a group's hyper-parameters only
after an edit, instead of comparing every entry of every group at every step (a cost a step pays
with cold caches, after its own sweep has evicted them).

A :class:`TrackedGroup` is the dict torch's ``add_param_group`` made, as a dict subclass that
raises ``edited`` on every change of its entries (``group["lr"] = ...`` as torch's schedulers do,
``update``, ``setdefault``, ...). A value that changes in place — a tensor ``lr`` a scheduler
``fill_()``s, a ``betas`` list — is no edit of the dict: a group holding one is compared at every
step (``mutable``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrackedGroup"]


class TrackedGroup(dict[str, Any]):
    """A param group that records whether its entries changed since the engine last read it."""

    __slots__ = ("edited", "mutable")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edited = True
        self.mutable = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.edited = True

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.edited = True

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.edited = True

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.edited = True
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self.edited = True
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self.edited = True
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self.edited = True

    def __ior__(self, other: Any) -> TrackedGroup:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)  # a copy or a pickle is a plain dict, as torch's groups are
