"""fastoptim for torch CPU tensors: ``torch.optim.Optimizer`` subclasses that step a model in place.

    >>> import torch, fastoptim.torch as fot
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = fot.AdamW(model.parameters(), lr=1e-3)
    >>> model(torch.ones(3, 4)).sum().backward()
    >>> opt.step()

Each class takes the arguments of the fastoptim optimizer of the same name (torch.optim's, where
torch has the rule) plus fastoptim's options (``max_grad_norm``, ``skip_nonfinite``,
``ema_decay``, ``state_dtype``, ...). A step is one native call over zero-copy NumPy views of the
parameters and their ``.grad`` (None skips the parameter, as torch; Adafactor and Muon run a few
native passes per parameter, LBFGS its native vector algebra between torch's own reads and
writes of the tensors); torch's schedulers, step
hooks, ``zero_grad``, ``add_param_group`` and closures work as with torch.optim, and state dicts
are torch's, so checkpoints cross between ``torch.optim.X`` and ``fastoptim.torch.X``.

Parameters are dense CPU tensors of float32, float64 or bfloat16 (through ``ml_dtypes``) in any
memory order (``channels_last`` too), their gradients in the same order. A parameter whose
memory moves after the optimizer bound it (``p.data = ...``, ``set_()``, ``share_memory_()``) is
refused at the next step with nothing updated; copy new values in place instead.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch as _torch  # noqa: F401  (without torch this import fails, with its own message)

import fastoptim as _fo

from ._lbfgs import LBFGS as _LBFGS
from ._optimizer import Optimizer
from ._per_array import PerArrayTorchOptimizer as _PerArrayTorchOptimizer
from ._sparse import SparseAdam as _SparseAdam

__all__ = ["ADOPT", "ASGD", "LAMB", "LARS", "LBFGS", "SGD", "SGDW", "AdEMAMix", "AdaBound", "Adadelta", "Adafactor",
           "Adagrad", "Adam", "AdamW", "Adamax", "Adan", "Lion", "Muon", "NAdam", "Optimizer", "RAdam", "RMSprop",
           "Rprop", "SparseAdam"]


def _for_torch(cls: type[Any]) -> type[Any]:
    """Give a class the signature and the docstring (formula, arguments, state) of its rule."""
    numpy_class = cls._numpy_class
    cls.__signature__ = inspect.signature(numpy_class)
    summary = (f"fastoptim.{numpy_class.__name__} for torch CPU tensors: a torch.optim.Optimizer that steps the "
               "tensors in place with fastoptim's native kernels (see fastoptim.torch). Its rule, as documented "
               "for NumPy arrays:\n\n")
    cls.__doc__ = summary + getattr(cls, "_torch_note", "") + (inspect.getdoc(numpy_class) or "").split("\nExample:")[0]
    return cls


@_for_torch
class ADOPT(Optimizer):
    _numpy_class = _fo.ADOPT


@_for_torch
class ASGD(Optimizer):
    _numpy_class = _fo.ASGD


@_for_torch
class LAMB(Optimizer):
    _numpy_class = _fo.LAMB


@_for_torch
class LARS(Optimizer):
    _numpy_class = _fo.LARS


@_for_torch
class SGD(Optimizer):
    _numpy_class = _fo.SGD


@_for_torch
class SGDW(Optimizer):
    _numpy_class = _fo.SGDW


@_for_torch
class AdEMAMix(Optimizer):
    _numpy_class = _fo.AdEMAMix


@_for_torch
class AdaBound(Optimizer):
    _numpy_class = _fo.AdaBound


@_for_torch
class Adadelta(Optimizer):
    _numpy_class = _fo.Adadelta


@_for_torch
class Adafactor(_PerArrayTorchOptimizer):
    _numpy_class = _fo.Adafactor


@_for_torch
class Adagrad(Optimizer):
    _numpy_class = _fo.Adagrad


@_for_torch
class Adam(Optimizer):
    _numpy_class = _fo.Adam


@_for_torch
class AdamW(Optimizer):
    _numpy_class = _fo.AdamW


@_for_torch
class Adamax(Optimizer):
    _numpy_class = _fo.Adamax


@_for_torch
class Adan(Optimizer):
    _numpy_class = _fo.Adan


@_for_torch
class Lion(Optimizer):
    _numpy_class = _fo.Lion


@_for_torch
class Muon(_PerArrayTorchOptimizer):
    _numpy_class = _fo.Muon
    _probe_shape = (1, 1)


@_for_torch
class NAdam(Optimizer):
    _numpy_class = _fo.NAdam


@_for_torch
class RAdam(Optimizer):
    _numpy_class = _fo.RAdam


@_for_torch
class RMSprop(Optimizer):
    _numpy_class = _fo.RMSprop


@_for_torch
class Rprop(Optimizer):
    _numpy_class = _fo.Rprop


SparseAdam = _for_torch(_SparseAdam)
LBFGS = _for_torch(_LBFGS)
