"""Training on several processes with MPI (through mpi4py): data parallelism and ZeRO stage 1.

    from mpi4py import MPI
    import fastoptim as fo
    from fastoptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer

    opt = DistributedOptimizer(fo.AdamW(model.params, lr=1e-3))          # every rank: whole state
    opt = ZeroRedundancyOptimizer(model.params, fo.AdamW, lr=1e-3)       # every rank: 1/N of it
    loss, grads = model.loss_and_grads(x_local, y_local)                  # this rank's batch
    opt.step(grads)                                                       # same bits on every rank

Run with ``mpiexec -n 4 python train.py``. mpi4py is an optional dependency
(``pip install mpi4py mpich``); this module imports without it and says so on first use.
"""

from __future__ import annotations

from ._common import default_num_threads
from .data_parallel import DistributedOptimizer
from .zero import ZeroRedundancyOptimizer

__all__ = ["DistributedOptimizer", "ZeroRedundancyOptimizer", "default_num_threads"]
