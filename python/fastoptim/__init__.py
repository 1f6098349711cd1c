"""fastoptim: deep-learning optimizers that update NumPy arrays in place with SIMD C++ kernels.

    >>> import numpy as np, fastoptim as fo
    >>> w = np.zeros(3, np.float32)
    >>> opt = fo.Adam({"w": w}, lr=0.1)
    >>> opt.step({"w": np.ones(3, np.float32)})
    >>> w
    array([-0.1, -0.1, -0.1], dtype=float32)
"""

from __future__ import annotations

import os

# After a parallel region, OpenMP's threads spin for a while before sleeping. GNU OpenMP's
# default spin (~300k iterations) kept our two threads busy between training steps and
# starved NumPy's BLAS threads on the same cores: a matmul + step loop ran 2x slower, and a
# demo epoch up to 70x slower under load. A short spin keeps back-to-back steps as fast.
# Either variable, set by the user, wins; it only acts if GNU OpenMP is not loaded yet.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

from . import distributed, lr_scheduler, schedules
from ._config import (  # noqa: E402
    available_targets,
    config,
    get_num_threads,
    get_prefetch_above,
    get_target,
    set_num_threads,
    set_prefetch_above,
    set_target,
    show_config,
)
from ._core import __version__
from .adabound import AdaBound
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adam_variants import Adamax, NAdam, RAdam
from .layerwise import LAMB, LARS
from .lion import Lion
from .lookahead import Lookahead, Ranger
from .optimizer import Optimizer, ParamGroup
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD

__all__ = [
    "LAMB",
    "LARS",
    "SGD",
    "AdaBound",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Lookahead",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Ranger",
    "Rprop",
    "Optimizer",
    "ParamGroup",
    "__version__",
    "distributed",
    "lr_scheduler",
    "schedules",
    "available_targets",
    "config",
    "get_num_threads",
    "get_prefetch_above",
    "get_target",
    "set_num_threads",
    "set_prefetch_above",
    "set_target",
    "show_config",
]
