"""L-BFGS's vector algebra for one iteration beside the bandwidth probe over the same bytes
(issue 27's bar: at least 80% of the probe at 1e6 and 1e7 elements with history_size=10),
alternated round by round in one process, best rounds compared.

One iteration's sweeps, each a native `combine` (n elements, float32 or float64):
  the new pair:    y = g − g_prev (reads 2, writes 1), s = t·d with y·s (reads 2, writes 1)
  the first loop:  q = −g with s·q (reads 2, writes 1); k − 1 sweeps q ← q − αy with s·q
                   (reads 3, writes 1); the last, d = γ(q − αy) with y·d (reads 2, writes 1)
  the second loop: k sweeps d ← d + c·s with y·d, the last with g·d and max |d| (reads 3, writes 1)
  the step:        p ← p + t·d (reads 2, writes 1); the gradient gathered, max |g| (reads 1, writes 1)
The probe sweeps the same arrays in the same order, each sweep's shape (r reads, w of them written).

    python bench/lbfgs_algebra.py [--sizes 1e6,1e7] [--history 10] [--dtype float32] [--rounds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from typing import Any

import numpy as np

import fastoptim as fo
from fastoptim import _core


def sweeps(k: int) -> Counter[tuple[int, int]]:
    """(reads, writes) of each sweep of one iteration with k pairs in the history."""
    shapes = [(2, 1), (2, 1), (2, 1)] + [(3, 1)] * (k - 1) + [(2, 1)] + [(3, 1)] * k + [(2, 1), (1, 1)]
    return Counter(shapes)


def measure(n: int, dtype: np.dtype[Any], k: int, rounds: int, threads: int) -> dict[str, Any]:
    """One size: the best iteration and the best probe over its sweeps."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    opt = fo.LBFGS([x], history_size=k, lr=1e-3)
    scale = rng.uniform(0.5, 2.0, n).astype(dtype)
    grad_out = np.empty(n, dtype)

    def closure() -> tuple[float, list[np.ndarray]]:
        np.multiply(scale, x, out=grad_out)
        return float(np.dot(grad_out, x)), [grad_out]
    while len(opt._order) < k:  # fill the history with real pairs
        opt.step(closure)
    grad = opt._other_grad_buffer()
    np.copyto(grad, opt._prev_grad)
    grad += dtype.type(1e-3)

    def iteration() -> None:  # the algebra of one iteration, as LBFGS._step runs it, closure aside
        opt._remember(grad, 1e-3)  # into the spare row; the history stays full either way
        opt._two_loop(grad)
        opt._add_to_params(0.0, opt._direction)
        _core.combine(grad, grad_out, 1.0, None, 0.0, None, True)
    # The probe sweeps the iteration's own arrays in its order, each sweep's shape (reads, of
    # which the first is written): the same bytes from the same places, the same cache.
    order, dirs, steps, d, p = opt._order, opt._dirs, opt._steps, opt._direction, x
    spare = next(r for r in range(k + 1) if r not in order)
    plan = [([dirs[spare], grad], 1), ([steps[spare], d], 1), ([d, steps[order[-1]]], 1)]
    plan += [([d, dirs[order[i]], steps[order[i - 1]]], 1) for i in range(k - 1, 0, -1)]
    plan += [([d, dirs[order[0]]], 1)]
    plan += [([d, steps[order[i]], dirs[order[i + 1]] if i + 1 < k else grad], 1) for i in range(k)]
    plan += [([p, d], 1), ([grad], 1)]
    assert Counter((len(a), w) for a, w in plan) == sweeps(k)

    def probe() -> None:
        for arrays, writes in plan:
            _core.probe(arrays, writes, threads)
    best = {"iteration": float("inf"), "probe": float("inf")}
    for _ in range(rounds):
        for name, job in (("iteration", iteration), ("probe", probe)):
            start = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - start)
    moved = sum(count * (r + w) for (r, w), count in sweeps(k).items()) * n * dtype.itemsize
    share = best["probe"] / best["iteration"]
    print(f"n={n:.0e} {dtype.name} history {k}, {threads} threads: iteration {best['iteration'] * 1e3:8.2f} ms, "
          f"the probe over its {moved / 1e6:.0f} MB {best['probe'] * 1e3:8.2f} ms: {share:.0%} of the probe")
    return {"n": n, "bytes_per_iteration": moved, "best_seconds": best, "share_of_probe": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--history", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    dtype, k, threads = np.dtype(args.dtype), args.history, fo.get_num_threads()
    results = [measure(int(float(size)), dtype, k, args.rounds, threads) for size in args.sizes.split(",")]
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": threads,
                       "target": fo.get_target(), "dtype": dtype.name, "history": k, "rounds": args.rounds,
                       "results": results}, out, indent=1)


if __name__ == "__main__":
    main()
