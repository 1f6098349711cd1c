"""What a step costs besides its sweep, each call timed right after a sweep of other memory about
as large as a 1e6 step's (24 MB read, against AdamW's 16 MB read and 12 MB written), which
leaves the interpreter's and torch's code and data in the last-level cache but not in L1/L2.

    python bench/torch_fixed_costs.py [--size 1000] [--evict 1000000] [--rounds 300] [--json FILE]

The optimizers step `--size` elements (small: the sweep is not what is measured); the sweep
before each call reads six arrays of `--evict` float32 elements and writes three, as the probe
does. Beside the steps (fastoptim.torch's one native call, the same engine's step on its views,
the NumPy API's step, the probe's bare call), the single torch calls the native step makes per
tensor or per step, each from Python (one Python call's own cost is the "nothing" row). Each is
timed cold on its own: an upper bound on what it adds inside a step, where the calls come from C
and share what the first one brought into the caches. Issue 28's bar at 1e6 (>= 90% of the
probe) leaves the step a tenth of the probe's time for all of this.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

import fastoptim as fo
import fastoptim.torch as fot
from fastoptim import _core
from fastoptim.torch._optimizer import _increment_version  # what the step bumps autograd's versions with


def _tensor(size: int, rng: np.random.Generator) -> torch.Tensor:
    tensor = torch.from_numpy(rng.standard_normal(size).astype(np.float32)).requires_grad_()
    tensor.grad = torch.from_numpy(rng.standard_normal(size).astype(np.float32))
    return tensor


def _cases(size: int) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    threads = fo.get_num_threads()
    stepped, viewed = _tensor(size, rng), _tensor(size, rng)
    torch_opt, engine_owner = fot.AdamW([stepped], lr=1e-3), fot.AdamW([viewed], lr=1e-3)
    engine, views = engine_owner._built(), engine_owner._gathered()
    param, grad = rng.standard_normal(size).astype(np.float32), rng.standard_normal(size).astype(np.float32)
    numpy_opt = fo.AdamW([param], lr=1e-3)
    probed = [np.full(size, 0.0, np.float32) for _ in range(4)]
    lock = threading.RLock()
    return {
        "fastoptim.torch step": torch_opt.step,
        "its engine's step on its views": lambda: engine.step(views),
        "NumPy API step": lambda: numpy_opt.step([grad]),
        "probe": lambda: _core.probe(probed, 3, threads),
        "tensor.grad": lambda: stepped.grad,
        "tensor.data_ptr()": stepped.data_ptr,
        "torch._C._increment_version([tensor])": lambda: _increment_version([stepped]),
        "RLock acquire(False) and release": lambda: (lock.acquire(False), lock.release()),
        "torch._C._is_torch_function_mode_enabled()": torch._C._is_torch_function_mode_enabled,
        "nothing (a Python call)": lambda: None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="elements each optimizer steps")
    parser.add_argument("--evict", type=int, default=1_000_000, help="elements of each array the sweep reads")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    threads = fo.get_num_threads()
    torch.set_num_threads(threads)
    cases = _cases(args.size)
    evicting = [np.full(args.evict, 1.0, np.float32) for _ in range(6)]
    times: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    for round_ in range(args.rounds + 10):  # the first 10 rounds warm up
        for name, call in cases.items():
            _core.probe(evicting, 3, threads)
            start = clock()
            call()
            elapsed = clock() - start
            if round_ >= 10:
                times[name].append(elapsed)
    figures = {name: {"median_us": 1e6 * statistics.median(t), "q1_us": 1e6 * float(np.quantile(t, 0.25)),
                      "best_us": 1e6 * min(t)} for name, t in times.items()}
    print(f"each call after a sweep of 6 x {args.evict} float32 ({24e-6 * args.evict:.0f} MB), {threads} threads, "
          f"{args.rounds} rounds; optimizers over {args.size} elements (µs)")
    for name, f in figures.items():
        print(f"  {name:44s} median {f['median_us']:7.1f}  q1 {f['q1_us']:7.1f}  best {f['best_us']:7.1f}")
    if args.json:
        with open(args.json, "w") as out:
            record = {"size": args.size, "evict": args.evict, "threads": threads, "rounds": args.rounds,
                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "torch": torch.__version__, "fastoptim": fo.config(), "us_per_call": figures}
            json.dump(record, out, indent=1)


if __name__ == "__main__":
    main()
