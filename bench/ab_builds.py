"""Two builds of fastoptim side by side: `fastoptim bench` run alternately with each, round by
round, so that drift in the machine's speed hits both alike.

    pip install --no-deps --target /tmp/before <checkout of the old commit>
    pip install --no-deps --target /tmp/after .
    python bench/ab_builds.py /tmp/before /tmp/after --rounds 5 --sizes 1e4,1e6,model

Run it with a Python that has NumPy but no fastoptim installed (an editable install would
shadow both folders; every run checks which fastoptim it imported). Each round runs A then B,
the next B then A. The table gives, per workload, each build's best and median Gel/s over the
rounds, its median fraction of the bandwidth probe measured in the same run, and B/A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def run_bench(site: str, sizes: str, extra: list[str], out: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": site}
    where = subprocess.run([sys.executable, "-c", "import fastoptim; print(fastoptim.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(os.path.abspath(site)):
        raise SystemExit(f"{site}: Python imported fastoptim from {where}; use a Python without fastoptim installed")
    subprocess.run([sys.executable, "-m", "fastoptim", "bench", "--peers", "fastoptim,probe", "--sizes", sizes,
                    "--out", str(out), "--no-plot", "--quiet", *extra], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    results: list[dict[str, Any]] = json.loads((out / "bench.json").read_text())["results"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="folder holding build A (the baseline)")
    parser.add_argument("b", help="folder holding build B")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each build (default 5)")
    parser.add_argument("--sizes", default="1e4,1e6,model", help="passed to fastoptim bench")
    parser.add_argument("--json", help="write every run's figures here")
    args, extra = parser.parse_known_args()

    runs: dict[str, list[list[dict[str, Any]]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
            for build in order:
                site = args.a if build == "A" else args.b
                runs[build].append(run_bench(site, args.sizes, extra, Path(tmp) / f"{build}{round_}"))
                print(f"round {round_ + 1}/{args.rounds}: {build} done", file=sys.stderr)

    def figures(build: str, work: str) -> tuple[list[float], list[float]]:
        rows = [next(r for r in run if r["work"] == work) for run in runs[build]]
        return ([r["peers"]["fastoptim"]["gels"] for r in rows], [r["fraction_of_probe"]["fastoptim"] for r in rows])

    works = [r["work"] for r in runs["A"][0]]
    print(f"{'work':>8} | {'A best':>7} {'A median':>8} {'A/probe':>7} | {'B best':>7} {'B median':>8} {'B/probe':>7} "
          f"| {'B/A best':>8} {'B/A median':>10} {'B/A of probe':>12}")
    summary = []
    for work in works:
        a_gels, a_probe = figures("A", work)
        b_gels, b_probe = figures("B", work)
        row = {"work": work, "a_best": max(a_gels), "a_median": statistics.median(a_gels),
               "a_probe": statistics.median(a_probe), "b_best": max(b_gels), "b_median": statistics.median(b_gels),
               "b_probe": statistics.median(b_probe), "a_runs": a_gels, "b_runs": b_gels}
        summary.append(row)
        print(f"{work:>8} | {row['a_best']:7.3f} {row['a_median']:8.3f} {row['a_probe']:7.3f} | {row['b_best']:7.3f} "
              f"{row['b_median']:8.3f} {row['b_probe']:7.3f} | {row['b_best'] / row['a_best']:8.3f} "
              f"{row['b_median'] / row['a_median']:10.3f} {row['b_probe'] / row['a_probe']:12.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"a": args.a, "b": args.b, "rounds": args.rounds, "extra": extra,
                                               "summary": summary, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
