"""What fastoptim.torch's layer costs per step with cold caches: the step over one float32 tensor
of 1e6 elements (AdamW), whose own 28 MB sweep evicts the layer's code and data before the next
step, beside the NumPy engine's step over the same views, beside the Python path the step takes
when something changed (its one native call declined), and beside copies of that path with one
part taken out (so that what each part costs in a real step, not alone, shows). Issue 28's bar at
1e6 (>= 90% of the probe) was missed by about the Python path's cost.

    python bench/torch_layer_cost.py [--size 1000000] [--rounds 400] [--json FILE]

Every case is one optimizer of its own over tensors of its own; the cases run in turn, one step
each per round (alternated), and each step is timed alone. A part "taken out" is replaced by what
returns its last result, which is only sound for this bench's unchanging groups and gradients.
The Python path's cases are optimizers whose native call is switched off (``_binding = None``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

import fastoptim as fo
import fastoptim.torch as fot


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _optimizer(size: int, rng: np.random.Generator) -> Any:
    tensor = torch.from_numpy(rng.standard_normal(size).astype(np.float32)).requires_grad_()
    tensor.grad = torch.from_numpy(rng.standard_normal(size).astype(np.float32))
    return fot.AdamW([tensor], lr=1e-3)


def _cases(size: int) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    full, engine_opt, python_path = _optimizer(size, rng), _optimizer(size, rng), _optimizer(size, rng)
    engine, views = engine_opt._built(), engine_opt._gathered()
    without_sync, without_gather, without_lock = (_optimizer(size, rng) for _ in range(3))
    for opt in (python_path, without_sync, without_gather, without_lock):
        opt._binding = None
    without_sync._sync_groups = lambda engine: None
    held = without_gather._gathered()
    without_gather._gathered = lambda: held
    without_lock._lock = _NoLock()
    return {"fastoptim.torch step": full.step, "the engine's step on its views": lambda: engine.step(views),
            "the Python path": python_path.step, "the Python path without _sync_groups": without_sync.step,
            "the Python path without _gathered": without_gather.step,
            "the Python path without the lock": without_lock.step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    cases = _cases(args.size)
    times: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    for round_ in range(args.rounds + 20):  # the first 20 rounds warm up
        for name, run in cases.items():
            start = clock()
            run()
            if round_ >= 20:
                times[name].append(clock() - start)
    figures = {name: {"median_us": 1e6 * statistics.median(t), "best_us": 1e6 * min(t)} for name, t in times.items()}
    engine = figures["the engine's step on its views"]["median_us"]
    print(f"AdamW, one float32 tensor of {args.size}, {fo.get_num_threads()} threads, {args.rounds} "
          "alternated rounds (µs per step; the last column: the median over the engine's)")
    for name, f in figures.items():
        print(f"  {name:38s} median {f['median_us']:8.1f}  best {f['best_us']:8.1f}  {f['median_us'] - engine:+7.1f}")
    if args.json:
        with open(args.json, "w") as out:
            record = {"size": args.size, "threads": fo.get_num_threads(), "rounds": args.rounds, "us_per_step": figures}
            json.dump(record, out, indent=1)


if __name__ == "__main__":
    main()
