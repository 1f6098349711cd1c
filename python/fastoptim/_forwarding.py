"""What a wrapper (Lookahead, the distributed optimizers) shows of the optimizer it wraps."""

from __future__ import annotations

from typing import Any

__all__ = ["forwarded"]


def forwarded(name: str, doc: str | None = None, *, settable: bool = False) -> Any:
    """A property: ``wrapper.<name>`` is ``wrapper.optimizer.<name>``, the very object, so that
    schedulers and edits reach the optimizer that steps; with `settable`, setting it sets the
    wrapped optimizer's (which checks the value)."""

    def read(wrapper: Any) -> Any:
        return getattr(wrapper.optimizer, name)

    def write(wrapper: Any, value: Any) -> None:
        setattr(wrapper.optimizer, name, value)

    read.__name__ = read.__qualname__ = write.__name__ = write.__qualname__ = name
    return property(read, write if settable else None, doc=doc)
