#!/usr/bin/env python3
"""Software prefetch forced on and off, alternated in one process: where the default line of
``fo.set_prefetch_above`` should fall on this machine.

    python bench/prefetch_ab.py                            # Adam, float32: 1e6, 4e6, 1e7, model
    python bench/prefetch_ab.py --sizes 2e6,7e6 --rounds 600

For each size, one Adam step with prefetch on (``set_prefetch_above(0)``) and one with it off,
and the probe's sweep of the same bytes under each, alternated round by round by the benchmark's
own timer (each timed step right after an untimed one of its own). Prints Gel/s and off/on: above
1 where leaving prefetch off is faster. The default line is printed for comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    from fastoptim import _bench
except ImportError:  # a source checkout with the extension built in place: use python/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from fastoptim import _bench

import fastoptim as fo
from fastoptim import _core, _omp

ALWAYS, NEVER = 0, 2**62


def measure(work: _bench.Work, rounds: int, rng: np.random.Generator) -> dict[str, float]:
    """Gel/s of Adam and of the probe (4 arrays read, 3 written) with prefetch on and off."""
    params = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    opt = fo.Adam(params, lr=1e-3)
    n = sum(p.size for p in params)
    arrays = [np.full(n, 0.5, np.float32) for _ in range(4)]
    threads = fo.get_num_threads()
    steps = {}
    for label, above in (("on", ALWAYS), ("off", NEVER)):
        steps[f"adam {label}"] = lambda above=above: (fo.set_prefetch_above(above), opt.step(grads))
        steps[f"probe {label}"] = lambda above=above: (fo.set_prefetch_above(above), _core.probe(arrays, 3, threads))
    times = _bench.alternate(steps, warmup=5, repeats=rounds, min_time=0.0, max_repeats=rounds, max_time=1e9)
    return {name: n / float(np.median(t)) / 1e9 for name, t in times.items()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/prefetch_ab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e6,4e6,1e7,model", help="element counts of one array, or 'model'")
    p.add_argument("--rounds", type=int, default=300, help="timed steps of each of the four")
    args = p.parse_args(argv)
    default = fo.get_prefetch_above()
    rng = np.random.default_rng(0)
    print(f"{'work':>6}  {'MB':>6}  {'adam on':>8}  {'adam off':>8}  {'off/on':>6}  "
          f"{'probe on':>8}  {'probe off':>9}  {'off/on':>6}  default")
    try:
        for token in args.sizes.split(","):
            work = _bench.parse_work(token)
            g = measure(work, args.rounds, rng)
            megabytes = 16 * work.elements / 1e6  # p, g, m, v in float32
            chosen = "on" if 16 * work.elements > default else "off"
            print(f"{work.label:>6}  {megabytes:6.0f}  {g['adam on']:8.2f}  {g['adam off']:8.2f}  "
                  f"{g['adam off'] / g['adam on']:6.3f}  {g['probe on']:8.2f}  {g['probe off']:9.2f}  "
                  f"{g['probe off'] / g['probe on']:6.3f}  {chosen}", flush=True)
    finally:
        fo.set_prefetch_above(default)
    wait = _omp.wait_text()
    print(f"default line {default / 2**20:.0f} MiB (last-level cache {fo.config()['last_level_cache'] / 2**20:.0f} "
          f"MiB); Adam float32, {fo.get_num_threads()} threads, {fo.get_target()}; OpenMP wait: {wait or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
