"""Adafactor's three native passes on one matrix, each beside the bandwidth probe over the same
bytes (pass 1 reads p and g, pass 2 reads g, pass 3 reads p and g and writes p), alternated
round by round, best rounds compared.

    python bench/adafactor_passes.py [--size 7000] [--rounds 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastoptim as fo
from fastoptim import _core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=7000, help="the matrix is size × size float32")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    n = args.size
    rng = np.random.default_rng(0)
    p = rng.standard_normal((n, n), dtype=np.float32)
    g = rng.standard_normal((n, n), dtype=np.float32)
    rows_sq, cols_sq = np.empty(n), np.empty(n)
    row_inv, col_inv = np.ones(n, np.float32), np.ones(n, np.float32)
    swept = [np.full(n * n, 0.0, np.float32) for _ in range(2)]  # written: no shared zero page
    threads = fo.get_num_threads()
    jobs = {
        "pass 1": lambda: _core.factored_moments(p, g, 1.0, rows_sq, cols_sq),
        "probe 2r": lambda: _core.probe(swept, 0, threads),
        "pass 2": lambda: _core.factored_update_sq(p, g, 1.0, row_inv, col_inv, 1e15),
        "probe 1r": lambda: _core.probe(swept[:1], 0, threads),
        "pass 3": lambda: _core.factored_apply(p, g, 1.0, row_inv, col_inv, 1e15, 1.0, 1e-9),
        "probe 2r1w": lambda: _core.probe(swept, 1, threads),
    }
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(args.rounds):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - start)
    for mine, probe in [("pass 1", "probe 2r"), ("pass 2", "probe 1r"), ("pass 3", "probe 2r1w")]:
        print(f"{mine}: {best[mine] * 1e3:7.2f} ms  {probe}: {best[probe] * 1e3:7.2f} ms  "
              f"share {best[probe] / best[mine]:.0%}")
    total = sum(best[k] for k in ("pass 1", "pass 2", "pass 3"))
    probes = sum(best[k] for k in ("probe 2r", "probe 1r", "probe 2r1w"))
    print(f"all three: {probes / total:.0%} of the probe ({n}x{n} float32, {threads} threads)")


if __name__ == "__main__":
    main()
