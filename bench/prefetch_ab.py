#!/usr/bin/env python3
"""Software prefetch forced on and off, alternated in one process: where the default line of
``fo.set_prefetch_above`` should fall on this machine.

    python bench/prefetch_ab.py                            # Adam, float32: 1e6, 4e6, 1e7, model
    python bench/prefetch_ab.py --sizes 2e6,7e6 --rounds 600
    python bench/prefetch_ab.py --rules adamw,nadam,adan,lamb --sizes 1e6   # the benchmark's rules

For each rule and size, one step with prefetch on (``set_prefetch_above(0)``) and one with it off,
and the probe's sweeps of the same bytes under each, alternated round by round by the benchmark's
own timer (each timed step right after an untimed one of its own). Prints Gel/s and off/on: above
1 where leaving prefetch off is faster. MB: the bytes of the arrays the step reads, which the
line is compared with. The default line is printed for comparison.
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


def measure(rule: _bench.Rule, work: _bench.Work, rounds: int, rng: np.random.Generator) -> dict[str, float]:
    """Gel/s of the rule's step and of the probe over its sweeps' bytes, with prefetch on and off."""
    params = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    opt = rule.make_fastoptim(params)
    n = sum(p.size for p in params)
    arrays = [np.full(n, 0.5, np.float32) for _ in range(max(r for r, _ in rule.passes))]
    sweeps = [(arrays[:r], w) for r, w in rule.passes]
    threads = fo.get_num_threads()

    def probe() -> None:
        for chosen, writes in sweeps:
            _core.probe(chosen, writes, threads)

    steps = {}
    for label, above in (("on", ALWAYS), ("off", NEVER)):
        steps[f"step {label}"] = lambda above=above: (fo.set_prefetch_above(above), opt.step(grads))
        steps[f"probe {label}"] = lambda above=above: (fo.set_prefetch_above(above), probe())
    times = _bench.alternate(steps, warmup=max(5, rule.steady_after), repeats=rounds, min_time=0.0,
                             max_repeats=rounds, max_time=1e9)
    return {name: n / float(np.median(t)) / 1e9 for name, t in times.items()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/prefetch_ab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", default="adam", help="element-wise rules of python -m fastoptim bench, float32 state")
    p.add_argument("--sizes", default="1e6,4e6,1e7,model", help="element counts of one array, or 'model'")
    p.add_argument("--rounds", type=int, default=300, help="timed steps of each of the four")
    args = p.parse_args(argv)
    default = fo.get_prefetch_above()
    rules = []
    for name in args.rules.split(","):
        rule = _bench.RULES.get(name)
        if rule is None or rule.options or rule.matrices or rule.traffic is not None:
            # the probe and the MB column count float32 arrays of one element per parameter element
            p.error(f"--rules: {name!r} is not one of the benchmark's rules with float32 state stepped element by "
                    f"element (the element-wise rules of python -m fastoptim bench, without adamw_bf16_state)")
        rules.append(rule)
    rng = np.random.default_rng(0)
    print(f"{'work':>6}  {'MB':>6}  {'step on':>8}  {'step off':>8}  {'off/on':>6}  "
          f"{'probe on':>8}  {'probe off':>9}  {'off/on':>6}  default")
    try:
        for rule in rules:
            if len(rules) > 1:
                print(f"rule {rule.name}")
            for token in args.sizes.split(","):
                work = _bench.parse_work(token)
                g = measure(rule, work, args.rounds, rng)
                read = 4 * max(r for r, _ in rule.passes) * work.elements  # what the prefetch line counts
                chosen = "on" if read > default else "off"
                print(f"{work.label:>6}  {read / 1e6:6.0f}  {g['step on']:8.2f}  {g['step off']:8.2f}  "
                      f"{g['step off'] / g['step on']:6.3f}  {g['probe on']:8.2f}  {g['probe off']:9.2f}  "
                      f"{g['probe off'] / g['probe on']:6.3f}  {chosen}", flush=True)
    finally:
        fo.set_prefetch_above(default)
    wait = _omp.wait_text()
    print(f"default line {default / 2**20:.0f} MiB (last-level cache {fo.config()['last_level_cache'] / 2**20:.0f} "
          f"MiB); {args.rules}, float32, {fo.get_num_threads()} threads, {fo.get_target()}; "
          f"OpenMP wait: {wait or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
