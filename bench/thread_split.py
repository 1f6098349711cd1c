"""Who gets more of the memory bandwidth from two threads: torch's fused AdamW, which gives each
thread one contiguous half of the tensor, or fastoptim's AdamW and the bandwidth probe, whose
threads each own a contiguous run of 16K-element pieces and take the others' untaken pieces
when done (cpp/include/fastoptim/parallel.hpp; until 2026-12-02 they took the next piece as
they came free, interleaved).

    python bench/thread_split.py [--size 5e7] [--rounds 12] [--json FILE]

On one thread the three move their 28 bytes per element at the same rate; the gap on two
threads is what the pieces cost (or save) on this machine. Each round steps every case once in
turn, at 1 and then at 2 threads for every library (one process, alternated); the best round of
each is reported (neighbours only ever slow a round down).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

import fastoptim as fo
from fastoptim import _core

BYTES_PER_ELEMENT = 28  # AdamW: p, g, m, v read; p, m, v written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=5e7)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    n = int(args.size)
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    tensor = torch.from_numpy(p.copy()).requires_grad_()
    tensor.grad = torch.from_numpy(g.copy())
    fused = torch.optim.AdamW([tensor], lr=1e-3, fused=True)
    ours, our_grad = p.copy(), g.copy()
    opt = fo.AdamW([ours], lr=1e-3)
    arrays = [np.full(n, 0.0, np.float32) for _ in range(4)]

    def at(threads: int, step: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            torch.set_num_threads(threads)
            fo.set_num_threads(threads)
            return step()
        return run

    cases: dict[str, Callable[[], object]] = {}
    for threads in (1, 2):
        cases[f"torch fused, {threads} thread(s)"] = at(threads, fused.step)
        cases[f"fastoptim, {threads} thread(s)"] = at(threads, lambda: opt.step([our_grad]))
        cases[f"probe, {threads} thread(s)"] = at(threads, lambda t=threads: _core.probe(arrays, 3, t))
    best = {name: float("inf") for name in cases}
    for round_ in range(args.rounds + 2):  # two rounds to warm up
        for name, run in cases.items():
            run()  # the settings take effect, and the step after it is the one timed
            start = time.perf_counter()
            run()
            if round_ >= 2:
                best[name] = min(best[name], time.perf_counter() - start)
    print(f"AdamW float32, {n:.3g} elements, best of {args.rounds} alternated rounds (GB/s at "
          f"{BYTES_PER_ELEMENT} bytes per element)")
    rates = {name: n * BYTES_PER_ELEMENT / seconds / 1e9 for name, seconds in best.items()}
    for name, rate in rates.items():
        print(f"  {name:28s} {best[name] * 1e3:8.2f} ms  {rate:6.1f} GB/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"elements": n, "rounds": args.rounds, "ms": {k: v * 1e3 for k, v in best.items()},
                       "gb_per_s": rates}, f, indent=1)


if __name__ == "__main__":
    main()
