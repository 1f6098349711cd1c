"""NumPy's BLAS threads around a training loop, through threadpoolctl."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["blas_threads"]


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with every BLAS library in the process (NumPy's OpenBLAS or MKL, SciPy's)
    on at most `n` threads; ``None`` leaves them as they are. The limit is lifted on exit.

    A NumPy model's matrices are often too small for BLAS threads to pay, and BLAS threads that
    busy-wait collapse beside another busy program: on a 2-core machine with one busy process
    beside it, ``fastoptim demo`` took 3x as long with OpenBLAS's 2 threads as with one
    (bench/README.md, "Threads that share the machine").
    fastoptim's own threads are not BLAS threads: set them with :func:`set_num_threads`.

    Example::

        with fo.blas_threads(1):
            for x, y in batches:
                opt.step(model.gradients(x, y))
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int or None, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1 (or None to leave BLAS as it is), got {n}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield
