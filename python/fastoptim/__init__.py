"""fastoptim: deep-learning optimizers that update NumPy arrays in place with SIMD C++ kernels.

    >>> import numpy as np, fastoptim as fo
    >>> w = np.zeros(3, np.float32)
    >>> opt = fo.Adam({"w": w}, lr=0.1)
    >>> info = opt.step({"w": np.ones(3, np.float32)})
    >>> w
    array([-0.1, -0.1, -0.1], dtype=float32)
"""

from __future__ import annotations

from . import distributed, lr_scheduler, schedules
from ._blas import blas_threads
from ._clip import clip_grad_norm_, get_total_norm
from ._config import (
    available_targets,
    config,
    get_num_threads,
    get_prefetch_above,
    get_target,
    get_thread_placement,
    get_thread_policy,
    set_num_threads,
    set_prefetch_above,
    set_target,
    set_thread_placement,
    set_thread_policy,
    show_config,
)
from ._core import __version__
from ._paths import get_cmake_dir, get_include
from ._state_format import bfloat16_dtype, dequantize_blockwise, quantize_blockwise
from ._step_options import StepInfo
from .adabound import AdaBound
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adam_variants import Adamax, NAdam, RAdam
from .asgd import ASGD
from .layerwise import LAMB, LARS
from .lbfgs import LBFGS
from .lion import Lion
from .lookahead import Lookahead, Ranger
from .mixed_moments import ADOPT, Adan, AdEMAMix
from .muon import Muon, MuonWithAdamW, split_for_muon
from .optimizer import Optimizer, ParamGroup
from .rmsprop import RMSprop
from .row_sparse import RowSparse
from .rowwise_adagrad import RowwiseAdagrad
from .rprop import Rprop
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from .sgd import SGD, SGDW
from .sparse_adam import SparseAdam

__all__ = [
    "ADOPT",
    "ASGD",
    "LAMB",
    "LARS",
    "LBFGS",
    "SGD",
    "SGDW",
    "AdEMAMix",
    "AdaBound",
    "Adafactor",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Adan",
    "Lion",
    "Lookahead",
    "Muon",
    "MuonWithAdamW",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Ranger",
    "RowSparse",
    "RowwiseAdagrad",
    "Rprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "SparseAdam",
    "Optimizer",
    "ParamGroup",
    "StepInfo",
    "bfloat16_dtype",
    "dequantize_blockwise",
    "quantize_blockwise",
    "clip_grad_norm_",
    "get_total_norm",
    "split_for_muon",
    "__version__",
    "distributed",
    "lr_scheduler",
    "schedules",
    "available_targets",
    "config",
    "get_num_threads",
    "get_prefetch_above",
    "get_target",
    "get_thread_placement",
    "get_thread_policy",
    "blas_threads",
    "set_num_threads",
    "set_prefetch_above",
    "set_target",
    "set_thread_placement",
    "set_thread_policy",
    "show_config",
    "get_include",
    "get_cmake_dir",
]
