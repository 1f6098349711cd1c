"""Random problems for the optimizer tests."""

from __future__ import annotations

import numpy as np


def make_problem(rng: np.random.Generator, shapes: list[tuple[int, ...]], dtype: type, steps: int,
                 order: str = "C") -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Random parameters and `steps` lists of gradients of the given shapes."""
    params = [np.asarray(rng.standard_normal(s), dtype=dtype, order=order) for s in shapes]
    grads = [[np.asarray(rng.standard_normal(s), dtype=dtype, order=order) for s in shapes] for _ in range(steps)]
    return params, grads


def state_tolerance(dtype: type, expected: np.ndarray) -> dict[str, float]:
    """How close a state array must come to the reference: relative to the array's largest
    element in float32, since buffers such as RMSprop's sum terms of either sign and a small
    entry carries the rounding of the large terms it is the difference of."""
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-12, atol=1e-14)
    scale = float(np.max(np.abs(expected), initial=0.0, where=np.isfinite(expected)))
    return dict(rtol=1e-5, atol=max(1e-6, 1e-5 * scale))


def tolerance(dtype: type, lr: float = 0.0, steps: int = 0) -> dict[str, float]:
    """How close a kernel must come to the float64 reference.

    float64: 1e-12 relative. float32: 1e-5 relative and 1e-6 absolute, widened by 1% of the
    largest distance `steps` steps of size `lr` can move an element: where the gradient nearly
    cancels (g + λp ≈ 0, or a tiny g in Adam's m/sqrt(v)), the direction of a normalized update
    carries float32's rounding of g, amplified without bound, so the reference in float64 and
    the kernel in float32 legitimately differ there by a fraction of one step.
    """
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-12, atol=1e-14)
    return dict(rtol=1e-5, atol=max(1e-6, 1e-2 * lr * steps))


def on_first_target_then(target: str, threads: int, run):
    """run() on the first available target with one thread, then on `target` with `threads`:
    both results, for a same-bits comparison (the caller's restore_runtime fixture restores both)."""
    import fastoptim as fo

    fo.set_target(fo.available_targets()[0])
    fo.set_num_threads(1)
    want = run()
    fo.set_target(target)
    fo.set_num_threads(threads)
    return want, run()
