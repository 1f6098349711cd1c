#!/usr/bin/env python3
"""One Adam step inside a training loop, with other work between steps, on N threads and on one.

    python bench/training_loop.py                     # 1e5, 1e6, model; none / sleep / blas between
    python bench/training_loop.py --sizes model --between blas --rounds 400
    python bench/training_loop.py --settings default,OMP_PROC_BIND=true
    python bench/training_loop.py --between blas --blas-threads 1

``python -m fastoptim bench`` times steps back to back. In a training loop the forward and
backward passes run between steps, and by the next step fastoptim's OpenMP threads have gone to
sleep (or NumPy's BLAS threads are spinning on the cores they need). Each timed step here
follows an untimed step of its own and then the work between: ``none`` (back to back, as the
benchmark), ``sleep`` (the cores idle for ``--ms``, as while waiting for data) or ``blas``
(float32 256×256 matrix products for ``--ms`` on NumPy's BLAS threads, as a NumPy model's
forward and backward). Steps on N threads and on one are alternated round by round.

GNU OpenMP reads its settings once per process, so each ``--settings`` entry runs in a child of
its own: ``default`` (the environment as it is: ``import fastoptim`` changes none of it) or one
``VARIABLE=value``, such as the short spin ``GOMP_SPINCOUNT=1000`` docs/arrays.md suggests where
BLAS runs between steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    from fastoptim import _bench
except ImportError:  # a source checkout with the extension built in place: use python/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from fastoptim import _bench

import fastoptim as fo
from fastoptim import _omp

BETWEEN = ("none", "sleep", "blas")
DEFAULT_SETTINGS = "default,OMP_PROC_BIND=true,GOMP_SPINCOUNT=1000"


def work_between(kind: str, seconds: float) -> Callable[[], None]:
    """What runs between two steps, for about `seconds`."""
    if kind == "sleep":
        return lambda: time.sleep(seconds)
    if kind == "blas":
        a = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)

        def products() -> None:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                a @ a

        return products
    return lambda: None


def measure(work: _bench.Work, between: Callable[[], None], rounds: int) -> dict[str, float]:
    """Gel/s of Adam (float32) on fastoptim's threads and on one, each timed step preceded by an
    untimed step on the same threads and then `between`; medians over `rounds`."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in work.shapes]
    opt = fo.Adam(params, lr=1e-3)
    threads = {"n_threads": fo.get_num_threads(), "one_thread": 1}
    times: dict[str, list[float]] = {name: [] for name in threads}
    names = list(threads)
    try:
        for r in range(rounds + 3):  # the first three rounds warm up
            for name in names[r % 2:] + names[:r % 2]:
                fo.set_num_threads(threads[name])
                opt.step(grads)
                between()
                start = time.perf_counter()
                opt.step(grads)
                if r >= 3:
                    times[name].append(time.perf_counter() - start)
    finally:
        fo.set_num_threads(threads["n_threads"])
    return {name: work.elements / float(np.median(t)) / 1e9 for name, t in times.items()}


def child(args: argparse.Namespace) -> int:
    """One setting: a JSON line per (between, work)."""
    with fo.blas_threads(args.blas_threads or None):
        return _child_rows(args)


def _child_rows(args: argparse.Namespace) -> int:
    for kind in args.between.split(","):
        for token in args.sizes.split(","):
            work = _bench.parse_work(token)
            gels = measure(work, work_between(kind, args.ms / 1e3), args.rounds)
            print(json.dumps({"setting": args.child, "between": kind, "work": work.label,
                              "threads": fo.get_num_threads(), **gels}), flush=True)
    return 0


def run_setting(setting: str, argv: list[str]) -> list[dict[str, object]]:
    env = dict(os.environ)
    if setting != "default":
        name, _, value = setting.partition("=")
        env[name] = value
    out = subprocess.run([sys.executable, __file__, *argv, "--child", setting], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"setting {setting!r} failed:\n{out.stderr}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/training_loop.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e5,1e6,model", help="element counts of one array, or 'model'")
    p.add_argument("--between", default=",".join(BETWEEN), help="work between steps: none, sleep, blas")
    p.add_argument("--ms", type=float, default=3.0, help="milliseconds of work between steps")
    p.add_argument("--rounds", type=int, default=200, help="timed steps on each thread count")
    p.add_argument("--blas-threads", type=int, default=0,
                   help="NumPy's BLAS threads in the children (fo.blas_threads); 0 leaves BLAS as it is")
    p.add_argument("--settings", default=DEFAULT_SETTINGS,
                   help="'default' or VARIABLE=value, one child process each (comma-separated)")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.between.split(",")) - set(BETWEEN)
    if unknown:
        p.error(f"--between takes {', '.join(BETWEEN)}; got {', '.join(sorted(unknown))}")
    if args.child is not None:
        return child(args)

    passed = ["--sizes", args.sizes, "--between", args.between, "--ms", str(args.ms), "--rounds", str(args.rounds),
              "--blas-threads", str(args.blas_threads)]
    rows = [row for setting in args.settings.split(",") for row in run_setting(setting, passed)]
    print(f"{'setting':<24}  {'between':<7}  {'work':>6}  {'N threads':>9}  {'1 thread':>8}  {'N/1':>5}")
    for row in rows:
        n, one = float(row["n_threads"]), float(row["one_thread"])  # type: ignore[arg-type]
        print(f"{row['setting']:<24}  {row['between']:<7}  {row['work']:>6}  {n:9.2f}  {one:8.2f}  {n / one:5.2f}")
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    wait = _omp.wait_text()
    print(f"Gel/s, Adam float32, N = {rows[0]['threads'] if rows else '?'} threads, {fo.get_target()}; "
          f"{args.ms:g} ms between steps; NumPy's BLAS: {blas.get('name')} {blas.get('version')} on "
          f"{args.blas_threads or 'its own'} thread(s); "
          f"default OpenMP wait: {wait or 'OpenMP defaults'}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
