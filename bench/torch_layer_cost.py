"""What fastoptim.torch's layer costs per step with cold caches: the step over one float32 tensor
of 1e6 elements (AdamW), whose own 28 MB sweep evicts the layer's code and data before the next
step, beside the NumPy engine's step over the same views, beside the Python path the step takes
when something changed (its one native call declined), and beside copies of the native call and
of that path with one part taken out or moved (so that what each part costs in a real step, not
alone, shows). Issue 28's bar at 1e6 (>= 90% of the probe) was missed by about the Python path's
cost.

    python bench/torch_layer_cost.py [--size 1000000] [--rounds 400] [--replicas 1] [--json FILE]

Every case is one optimizer of its own over tensors of its own; the cases run in turn, one step
each per round (alternated), and each step is timed alone. A part "taken out" is replaced by what
returns its last result, which is only sound for this bench's unchanging groups and gradients.
The Python path's cases are optimizers whose native call is switched off (``_binding = None``).
The native call's parts are taken out through its binding: its version bump replaced by ``len``
(which reads the list and bumps nothing), its TorchFunctionMode check by ``bool`` (False); "the
version bump from Python, after" and "..., before" bump with torch's call around a native call
that bumps nothing (torch's call made after the native call returns, or before it is made), to
show what the bump costs where it is made.

Where the tensors fall in memory moves a case's median by about 10 µs here (in a run where four
cases were the same step, the optimizer made first ran 10-13 µs slower than the other three).
``--replicas N`` makes N optimizers per case, made in turn (case after case, replica after
replica) and run as cases of their own; each case's figures are the means of its replicas'
medians and bests (the record keeps each replica's median too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

import fastoptim as fo
import fastoptim.torch as fot
from fastoptim.torch._optimizer import _increment_version  # what the step bumps autograd's versions with


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _optimizer(size: int, rng: np.random.Generator) -> Any:
    tensor = torch.from_numpy(rng.standard_normal(size).astype(np.float32)).requires_grad_()
    tensor.grad = torch.from_numpy(rng.standard_normal(size).astype(np.float32))
    return fot.AdamW([tensor], lr=1e-3)


def _engine_step(opt: Any) -> Callable[[], object]:
    engine, views = opt._built(), opt._gathered()
    return lambda: engine.step(views)


def _without_bump(opt: Any) -> Any:
    opt._binding = opt._binding._replace(bump=len)
    return opt


def _without_mode_check(opt: Any) -> Any:
    opt._binding = opt._binding._replace(function_modes=bool)
    return opt


def _bumped_from_python(opt: Any, after: bool) -> Callable[[], object]:
    """The native call without its bump, and torch's bump of the same tensors made after it
    returns or before it is made."""
    stepped = _without_bump(opt)._stepped
    if after:
        return lambda: (opt.step(), _increment_version(stepped))
    return lambda: (_increment_version(stepped), opt.step())


def _python_path(opt: Any) -> Any:
    opt._binding = None
    return opt


def _without_sync(opt: Any) -> Any:
    _python_path(opt)._sync_groups = lambda engine: None
    return opt


def _without_gather(opt: Any) -> Any:
    held = _python_path(opt)._gathered()
    opt._gathered = lambda: held
    return opt


def _without_lock(opt: Any) -> Any:
    _python_path(opt)._lock = _NoLock()
    return opt


def _numpy_api_step(opt: Any) -> Callable[[], object]:
    """The NumPy API's step on arrays of its own, as large as `opt`'s (made after it, so that the
    random draws of the cases after it stay as they were; `opt` itself is let go)."""
    rng = np.random.default_rng(1)
    size = opt.param_groups[0]["params"][0].numel()
    numpy_opt = fo.AdamW([rng.standard_normal(size).astype(np.float32)], lr=1e-3)
    grads = [rng.standard_normal(size).astype(np.float32)]
    return lambda: numpy_opt.step(grads)


# Each case: how its step is made from an optimizer of its own
_CASES: dict[str, Callable[[Any], Callable[[], object]]] = {
    "fastoptim.torch step": lambda opt: opt.step,
    "the native call without the bump": lambda opt: _without_bump(opt).step,
    "... without the bump or mode check": lambda opt: _without_mode_check(_without_bump(opt)).step,
    "the version bump from Python, after": lambda opt: _bumped_from_python(opt, after=True),
    "the version bump from Python, before": lambda opt: _bumped_from_python(opt, after=False),
    "the engine's step on its views": _engine_step,
    "the NumPy API's step": _numpy_api_step,
    "the Python path": lambda opt: _python_path(opt).step,
    "the Python path without _sync_groups": lambda opt: _without_sync(opt).step,
    "the Python path without _gathered": lambda opt: _without_gather(opt).step,
    "the Python path without the lock": lambda opt: _without_lock(opt).step,
}


def _cases(size: int, replicas: int) -> dict[tuple[str, int], Callable[[], object]]:
    rng = np.random.default_rng(0)
    return {(name, replica): make(_optimizer(size, rng))
            for replica in range(replicas) for name, make in _CASES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--replicas", type=int, default=1, help="optimizers per case, made in turn (see above)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    cases = _cases(args.size, args.replicas)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in cases}
    clock = time.perf_counter
    for round_ in range(args.rounds + 20):  # the first 20 rounds warm up
        for key, run in cases.items():
            start = clock()
            run()
            if round_ >= 20:
                times[key].append(clock() - start)
    figures: dict[str, dict[str, Any]] = {}  # the means, and each replica's median
    for name in _CASES:
        runs = [times[(name, replica)] for replica in range(args.replicas)]
        medians = [1e6 * statistics.median(t) for t in runs]
        figures[name] = {"median_us": statistics.fmean(medians),
                         "best_us": 1e6 * statistics.fmean(min(t) for t in runs), "replica_medians_us": medians}
    engine = figures["the engine's step on its views"]["median_us"]
    print(f"AdamW, one float32 tensor of {args.size}, {fo.get_num_threads()} threads, {args.rounds} "
          f"alternated rounds, {args.replicas} replica(s) per case (µs per step, means over the replicas; "
          "the last column: the median over the engine's)")
    for name, f in figures.items():
        print(f"  {name:38s} median {f['median_us']:8.1f}  best {f['best_us']:8.1f}  {f['median_us'] - engine:+7.1f}")
    if args.json:
        with open(args.json, "w") as out:
            record = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "size": args.size,
                      "threads": fo.get_num_threads(), "rounds": args.rounds, "replicas": args.replicas,
                      "us_per_step": figures}
            json.dump(record, out, indent=1)


if __name__ == "__main__":
    main()
