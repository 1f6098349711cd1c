"""Changing an array's shape or dtype in place, as users can (NumPy 2.5 deprecates it)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def set_in_place(array: np.ndarray, attribute: str, value: Any) -> bool:
    """``array.<attribute> = value`` (shape, dtype or flags.writeable): True if NumPy did it,
    False if this NumPy refuses it, in which case the hazard it stands for cannot happen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if attribute == "writeable":
                array.flags.writeable = value
            else:
                setattr(array, attribute, value)
        except (AttributeError, TypeError, ValueError):
            return False
    return True
