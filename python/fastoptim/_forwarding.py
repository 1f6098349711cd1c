"""What a wrapper (Lookahead, the distributed optimizers) shows of the optimizer it wraps."""

from __future__ import annotations

from typing import Any

__all__ = ["forwarded"]


def forwarded(name: str, doc: str | None = None) -> Any:
    """A read-only property: ``wrapper.<name>`` is ``wrapper.optimizer.<name>``, the very object,
    so that schedulers and edits reach the optimizer that steps."""

    def read(wrapper: Any) -> Any:
        return getattr(wrapper.optimizer, name)

    read.__name__ = read.__qualname__ = name
    return property(read, doc=doc)
