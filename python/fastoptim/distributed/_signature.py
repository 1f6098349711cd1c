"""What ranks must agree on before their first message, as (label, value) pairs that
:func:`~._common.compare_signatures` compares with rank 0's."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from ..lookahead import Lookahead
from ..optimizer import Optimizer
from ._common import f_only

__all__ = ["core_of", "describe", "group_items", "optimizer_items"]

_RESERVED = ("params", "param_names")


def describe(array: np.ndarray) -> str:
    shape = "(" + ", ".join(map(str, array.shape)) + ("," if array.ndim == 1 else "") + ")"
    return f"shape {shape}, {array.dtype}, {'F' if f_only(array) else 'C'}-order"


def _hyper(group: Mapping[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in group.items() if k not in _RESERVED))


def group_items(groups: Sequence[tuple[Mapping[str, Any], Sequence[Hashable], Sequence[np.ndarray]]]) -> list[
        tuple[str, Any]]:
    """(hyper-parameters, names, arrays) per group."""
    items: list[tuple[str, Any]] = [("param groups:", len(groups))]
    for i, (hyper, names, arrays) in enumerate(groups):
        items.append((f"param_groups[{i}] with parameters", repr(list(names))))
        items.extend((f"params[{n!r}] with", describe(a)) for n, a in zip(names, arrays))
        items.append((f"param_groups[{i}] with hyper-parameters", _hyper(hyper)))
    return items


def core_of(optimizer: Any) -> Optimizer:
    """The optimizer that steps: Lookahead's inner one, or the optimizer itself."""
    core: Optimizer = optimizer.optimizer if isinstance(optimizer, Lookahead) else optimizer
    return core


def clocks(optimizer: Any) -> list[Any]:
    """Steps taken and running scalars of each parameter (and Lookahead's count, k and alpha)."""
    out: list[Any] = list(core_of(optimizer)._clocks())
    if isinstance(optimizer, Lookahead):
        out.append((optimizer._steps, optimizer.k, optimizer.alpha))
    return out


def optimizer_items(optimizer: Any) -> list[tuple[str, Any]]:
    """A built optimizer: its class, groups, state slots and clocks."""
    core = core_of(optimizer)
    groups = [(g, g["param_names"], g["params"]) for g in optimizer.param_groups]
    items: list[tuple[str, Any]] = [("optimizer", f"{type(optimizer).__qualname__}({type(core).__qualname__})"),
                                    ("native rule (cautious=True picks its own)", core._rule)]
    items.extend(group_items(groups))
    state = optimizer.state
    for _, names, _ in groups:
        items.extend((f"state of params[{n!r}] with slots", sorted(state.get(n, {}))) for n in names)
    items.append(("steps taken (per parameter: steps, fresh, running scalars)", repr(clocks(optimizer))))
    items.append(("step options (max_grad_norm, skip_nonfinite, ema_decay, ema_warmup)",
                  repr((optimizer.max_grad_norm, optimizer.skip_nonfinite, core.ema_decay, core.ema_warmup))))
    items.append(("micro-batches accumulated", core.pending))
    return items
