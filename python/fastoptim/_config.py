"""Build and runtime settings: instruction-set targets, threads and prefetching."""

from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["available_targets", "config", "get_num_threads", "get_prefetch_above", "get_target",
           "get_thread_placement", "get_thread_policy", "set_num_threads", "set_prefetch_above", "set_target",
           "set_thread_placement", "set_thread_policy", "show_config"]


def available_targets() -> list[str]:
    """The instruction-set targets this build has and this CPU runs, baseline first."""
    return [name for name, supported in _core.targets() if supported]


def get_target() -> str:
    """The target the kernels run on: the widest supported, or ``FASTOPTIM_ISA``'s choice."""
    return str(_core.get_target())


def set_target(name: str) -> None:
    """Run the kernels on `name` (one of :func:`available_targets`) from now on."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    _core.set_target(name)


def get_num_threads() -> int:
    """Threads a step may use (default: OpenMP's, which honours ``OMP_NUM_THREADS``)."""
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use at most `n` threads per step. Small steps always run on the calling thread.

    In a process forked (``multiprocessing``'s "fork" start method) from one that already
    stepped, fastoptim uses one thread whatever `n` is: GNU OpenMP's threads do not survive
    fork(), and a parallel region there would hang. Use the "spawn" start method for threads.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_prefetch_above() -> int:
    """Bytes a step's arrays (parameters, gradients and state together) must add up to before
    its kernels prefetch ahead in software. Default: an eighth of the CPU's last-level cache
    (8 MiB when the system does not report one). Below it, the arrays are expected in that
    cache from the previous step, where the hardware prefetcher keeps up alone and software
    prefetches only slow the sweep; above it they stream from memory, or from a large cache
    the hardware prefetcher alone does not keep pace with, and prefetching speeds it up."""
    return int(_core.get_prefetch_above())


def set_prefetch_above(nbytes: int) -> None:
    """Prefetch in steps whose arrays add up to more than `nbytes` (0: always). A speed
    setting only: the results are the same bits either way."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an int, got {type(nbytes).__name__}")
    _core.set_prefetch_above(nbytes)  # ValueError if negative


def get_thread_placement() -> bool:
    """Whether a step on several threads keeps OpenMP's workers off the CPU its caller runs on.

    In a training loop the workers sleep while the forward and backward passes run, and Linux
    often wakes one on the caller's own CPU, where it waits for the caller instead of sharing
    the step. With placement, the workers may run on every CPU the caller may use but the one
    it is on (set again only when the caller moves), so a woken worker starts at once. On by
    default on Linux with OpenMP; off where ``OMP_PROC_BIND``, ``OMP_PLACES``,
    ``GOMP_CPU_AFFINITY`` or ``KMP_AFFINITY`` place the threads, or with
    ``FASTOPTIM_THREAD_PLACEMENT=0``. The workers are the calling thread's OpenMP pool, which
    torch shares when it runs from the same thread."""
    return bool(_core.get_thread_placement())


def set_thread_placement(on: bool) -> None:
    """Turn thread placement (:func:`get_thread_placement`) on or off. Off gives the workers
    back every CPU at the next step. A speed setting only: the results are the same bits.
    ValueError when turning it on where it is not supported."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {type(on).__name__}")
    _core.set_thread_placement(on)


def get_thread_policy() -> dict[str, bool]:
    """The thread mechanisms steps run with (process-wide): ``placement``
    (:func:`get_thread_placement`) and ``backoff``: whether steps after other work may run on
    the calling thread alone when waking fastoptim's threads did not pay (docs/arrays.md, the
    "Threads" item). Speed settings only: the results are the same bits either way."""
    return {"placement": get_thread_placement(), "backoff": bool(_core.get_thread_backoff())}


def set_thread_policy(*, placement: bool | None = None, backoff: bool | None = None) -> None:
    """Turn the thread mechanisms of :func:`get_thread_policy` on or off; ``None`` leaves one
    as it is. ``FASTOPTIM_THREAD_PLACEMENT`` and ``FASTOPTIM_THREAD_BACKOFF`` (``0`` or ``1``)
    set them at import. ValueError when turning placement on where it is not supported; nothing
    changes when an argument is refused."""
    for name, value in (("placement", placement), ("backoff", backoff)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None, got {type(value).__name__}")
    if placement is not None:
        _core.set_thread_placement(placement)
    if backoff is not None:
        _core.set_thread_backoff(backoff)


def config() -> dict[str, Any]:
    """The version, the targets built, supported and chosen, threads, the last-level cache, the
    prefetch threshold, thread placement, and the compiler."""
    return {
        "version": _core.__version__,
        "target": get_target(),
        "available_targets": available_targets(),
        "built_targets": [name for name, _ in _core.targets()],
        "num_threads": get_num_threads(),
        "openmp": bool(_core.has_openmp()),
        "last_level_cache": int(_core.last_level_cache_bytes()),
        "prefetch_above": get_prefetch_above(),
        "thread_placement": get_thread_placement(),
        "thread_backoff": bool(_core.get_thread_backoff()),
        "compiler": _core.compiler,
        "rules": sorted(_core.rules()),
    }


_BYTE_SIZES = ("last_level_cache", "prefetch_above")  # shown as KiB/MiB by show_config


def readable_bytes(count: int) -> str:
    """A byte count as people read it: 32 MiB (33554432 bytes), 512 KiB, 100 bytes."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            amount = count / size
            text = f"{amount:.0f}" if amount == int(amount) else f"{amount:.1f}"
            return f"{text} {unit} ({count} bytes)"
    return f"{count} bytes"


def show_config() -> None:
    """Print :func:`config` as a table (byte counts in KiB/MiB)."""
    for key, value in config().items():
        if isinstance(value, list):
            shown = ", ".join(map(str, value))
        elif key in _BYTE_SIZES:
            shown = readable_bytes(int(value))
        else:
            shown = value
        print(f"{key:>18}: {shown}")
