"""fastoptim: deep-learning optimizers that update NumPy arrays in place with SIMD C++ kernels.

    >>> import numpy as np, fastoptim as fo
    >>> w = np.zeros(3, np.float32)
    >>> opt = fo.Adam({"w": w}, lr=0.1)
    >>> opt.step({"w": np.ones(3, np.float32)})
    >>> w
    array([-0.1, -0.1, -0.1], dtype=float32)
"""

from __future__ import annotations

from ._config import (
    available_targets,
    config,
    get_num_threads,
    get_target,
    set_num_threads,
    set_target,
    show_config,
)
from ._core import __version__
from .adam import Adam, AdamW
from .optimizer import Optimizer, ParamGroup
from .sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "ParamGroup",
    "__version__",
    "available_targets",
    "config",
    "get_num_threads",
    "get_target",
    "set_num_threads",
    "set_target",
    "show_config",
]
