"""Row-sparse steps beside a dense Adam step on the same table (issue 26's bar: updating 1% of the
rows of a 1e6 × 64 float32 table takes at most 3% of a dense Adam step), alternated round by
round in one process, best rounds compared. Rows: fo.SparseAdam and row-wise Adagrad on distinct
rows in random order and on a batch of lookups with repeats; torch.optim.SparseAdam on the same
rows when torch is installed; the bandwidth probe over the dense step's bytes.

    python bench/sparse_rows.py [--rows 1000000] [--cols 64] [--share 0.01] [--rounds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np

import fastoptim as fo
from fastoptim import _core


def best_seconds(job: Callable[[], object], repeats: int) -> float:
    """The mean of `repeats` calls, timed together (a sparse step is too short to time alone)."""
    start = time.perf_counter()
    for _ in range(repeats):
        job()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--share", type=float, default=0.01, help="the share of the rows a step updates")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rows, cols, touched = args.rows, args.cols, int(args.rows * args.share)
    rng = np.random.default_rng(0)
    shape = (rows, cols)
    distinct = rng.choice(rows, touched, replace=False)  # in random order: the step sorts them
    lookups = rng.integers(0, rows, touched)             # a batch's lookups: repeats summed first
    values = rng.standard_normal((touched, cols), dtype=np.float32)
    dense_grad = rng.standard_normal(shape, dtype=np.float32)

    dense_table = rng.standard_normal(shape, dtype=np.float32)
    dense = fo.Adam([dense_table], lr=1e-9)
    tables = {k: dense_table.copy() for k in ("sparse_adam", "rowwise_adagrad")}
    sparse_adam = fo.SparseAdam([tables["sparse_adam"]], lr=1e-9)
    rowwise = fo.Adagrad([tables["rowwise_adagrad"]], rowwise=True, lr=1e-9)
    swept = [np.zeros(rows * cols, np.float32) for _ in range(4)]  # Adam's 4 reads, 3 of them written
    jobs: dict[str, tuple[Callable[[], object], int]] = {
        "adam dense": (lambda: dense.step([dense_grad]), 2),
        "probe (adam's bytes)": (lambda: _core.probe(swept, 3, fo.get_num_threads()), 2),
        "sparse_adam distinct": (lambda: sparse_adam.step([fo.RowSparse(distinct, values)]), 20),
        "sparse_adam lookups": (lambda: sparse_adam.step([fo.RowSparse(lookups, values)]), 20),
        "rowwise_adagrad distinct": (lambda: rowwise.step([fo.RowSparse(distinct, values)]), 20),
        "rowwise_adagrad lookups": (lambda: rowwise.step([fo.RowSparse(lookups, values)]), 20),
    }
    try:
        import torch
        torch.set_num_threads(fo.get_num_threads())
        weight = torch.tensor(dense_table.copy())
        peer = torch.optim.SparseAdam([weight], lr=1e-9)
        grad = torch.sparse_coo_tensor(torch.tensor(distinct)[None], torch.tensor(values), shape)

        def torch_step() -> None:
            weight.grad = grad
            peer.step()
        jobs["torch SparseAdam distinct"] = (torch_step, 20)
    except ImportError:
        pass
    for job, _ in jobs.values():  # the state's first touch is not a step's cost
        job()
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(args.rounds):
        for name, (job, repeats) in jobs.items():
            best[name] = min(best[name], best_seconds(job, repeats))
    base = best["adam dense"]
    print(f"{rows} x {cols} float32, {touched} rows per sparse step, {fo.get_num_threads()} threads, "
          f"target {fo.get_target()}; best of {args.rounds} alternated rounds")
    for name, seconds in best.items():
        print(f"  {name:28s} {seconds * 1e3:9.3f} ms   {seconds / base:7.2%} of the dense Adam step")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": fo.get_num_threads(),
                       "target": fo.get_target(), "rows": rows, "cols": cols, "touched": touched,
                       "rounds": args.rounds, "best_seconds": best,
                       "share_of_dense_adam": {k: v / base for k, v in best.items()}}, out, indent=1)


if __name__ == "__main__":
    main()
