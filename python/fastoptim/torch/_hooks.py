"""torch's state-dict hooks (``register_state_dict_pre_hook`` and the rest), run around the
state-dict methods that fastoptim.torch's optimizers define for themselves, as torch runs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["hooked_load", "hooked_state_dict"]


def hooked_state_dict(optimizer: torch.optim.Optimizer, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`make()`'s state dict, the pre-hooks run before it and each post-hook given it to replace."""
    for pre_hook in optimizer._optimizer_state_dict_pre_hooks.values():
        pre_hook(optimizer)
    result = make()
    for post_hook in optimizer._optimizer_state_dict_post_hooks.values():
        returned = post_hook(optimizer, result)
        if returned is not None:
            result = returned
    return result


def hooked_load(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any],
                load: Callable[[dict[str, Any]], None]) -> None:
    """`load(state_dict)`, each pre-hook given the state dict to replace, the post-hooks run after.
    The hooks get a shallow copy, as torch's: one that edits it leaves the caller's dict alone."""
    state_dict = state_dict.copy()
    for pre_hook in optimizer._optimizer_load_state_dict_pre_hooks.values():
        returned = pre_hook(optimizer, state_dict)
        if returned is not None:
            state_dict = returned
    load(state_dict)
    for post_hook in optimizer._optimizer_load_state_dict_post_hooks.values():
        post_hook(optimizer)
