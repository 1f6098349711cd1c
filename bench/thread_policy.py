#!/usr/bin/env python3
"""The thread mechanisms, each turned off in turn, on a few workloads, alone and beside a busy process.

    python bench/thread_policy.py                  # issue 17's "after" table, 3 rounds
    python bench/thread_policy.py --rounds 5 --conditions defaults,busy --workloads demo
    python bench/thread_policy.py --demo-args="--blas-threads 1" --out bench/records/x.json

fastoptim's steps share the machine with NumPy's BLAS threads and, in many processes, torch's.
Three mechanisms act on that (docs/arrays.md, the "Threads" item): GNU OpenMP's spin after a parallel
region (``GOMP_SPINCOUNT``; before issue 17 ``import fastoptim`` set 1000), thread placement
and the thread backoff. Each condition runs every workload in a child process of its own (GNU
OpenMP reads its settings once per process), with the environment its parts set, joined by
``+``:

* ``defaults`` — the library as it installs;
* ``no-env`` — ``GOMP_SPINCOUNT=300000``, GNU OpenMP's own spin (before issue 17: nothing
  written into the environment at import); ``short-spin`` — ``GOMP_SPINCOUNT=1000``;
* ``no-placement``, ``no-backoff``, ``backoff`` — ``FASTOPTIM_THREAD_PLACEMENT=0``,
  ``FASTOPTIM_THREAD_BACKOFF=0`` or ``=1``; ``opt-in`` — the spin, placement and backoff off;
  ``one-thread`` — ``OMP_NUM_THREADS=1``;
* ``busy`` — one process spinning on one core beside the child.

The workloads: ``single`` (fixed work on one thread: the probe of what a busy neighbour costs
on this machine, which no thread policy can win back), ``steps`` (the demo's Adam step after
its small products, 2000 times: the steps' total, their 99th percentile and how many ran
alone), ``demo`` (``fastoptim demo``'s wall time), ``loop`` (``bench/training_loop.py``'s
Adam step on the 100-array model after 3 ms of sleep and after 3 ms of BLAS, Gel/s on fastoptim's
threads) and ``torch`` (torch's fused Adam on the model and a 256×256 torch matmul, in a process
that imported fastoptim first and steps it too: what the mechanisms cost torch). Conditions
alternate round by round, and the wait variables of the parent's environment are not passed
on (each condition sets its own); the table gives each cell's best round (a neighbour only ever slows a
run down) and its ratio to ``defaults``, in the direction where above 1 is faster.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import training_loop  # noqa: E402  (finds fastoptim, or python/ in a checkout built in place)

from fastoptim import _omp  # noqa: E402

# The parts a condition is made of, joined by "+": the environment each sets for the child.
PARTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "no-env": {"GOMP_SPINCOUNT": "300000"},
    "short-spin": {"GOMP_SPINCOUNT": "1000"},
    "no-placement": {"FASTOPTIM_THREAD_PLACEMENT": "0"},
    "no-backoff": {"FASTOPTIM_THREAD_BACKOFF": "0"},
    "backoff": {"FASTOPTIM_THREAD_BACKOFF": "1"},
    "opt-in": {"GOMP_SPINCOUNT": "300000", "FASTOPTIM_THREAD_PLACEMENT": "0", "FASTOPTIM_THREAD_BACKOFF": "0"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
    "busy": {},  # and one process spinning beside the child
}
DEFAULT_CONDITIONS = "defaults,short-spin,no-placement,no-backoff,busy,no-placement+busy,no-backoff+busy"
# Each metric: its workload, its unit, and whether more is better.
METRICS = {"single_s": ("single", "s", False), "steps_s": ("steps", "s", False),
           "steps_p99_us": ("steps", "us", False), "steps_alone": ("steps", "steps", False),
           "demo_s": ("demo", "s", False), "loop_after_sleep": ("loop", "Gel/s", True),
           "loop_after_blas": ("loop", "Gel/s", True), "torch_fused_adam_ms": ("torch", "ms", False),
           "torch_matmul_ms": ("torch", "ms", False)}


# ---- the children ------------------------------------------------------------------------
def demo(extra: list[str]) -> dict[str, float]:
    from fastoptim.demo.run import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["--out", str(Path(tempfile.gettempdir()) / "fastoptim-thread-policy.png"), *extra])
    return {"demo_s": time.perf_counter() - start}


def single() -> dict[str, float]:
    """The probe: fixed work on one thread (Python arithmetic and 64×64 products on one BLAS
    thread). What a busy neighbour costs it, no thread policy can win back."""
    import numpy as np

    import fastoptim as fo

    a = np.ones((64, 64), np.float32)
    start = time.perf_counter()
    with fo.blas_threads(1):
        for _ in range(80):
            sum(i * i for i in range(100_000))
            for _ in range(400):
                a @ a
    return {"single_s": time.perf_counter() - start}


def steps(count: int = 2000) -> dict[str, float]:
    """The demo's Adam step (its MLP's 6 arrays, 85k elements) after six of its small products
    on one BLAS thread, `count` times: the steps' total time, their 99th percentile, and how
    many the backoff ran alone. Beside a busy process a few steps in a hundred stall."""
    import numpy as np

    import fastoptim as fo
    from fastoptim.demo.run import HIDDEN

    rng = np.random.default_rng(0)
    sizes = [64, *HIDDEN, 10]  # the digits' 8x8 pixels, the hidden layers, the 10 classes
    shapes = [shape for a, b in zip(sizes[:-1], sizes[1:]) for shape in ((a, b), (b,))]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    opt = fo.Adam(params, lr=1e-3)
    x = rng.standard_normal((32, HIDDEN[0])).astype(np.float32)
    w = rng.standard_normal((HIDDEN[0], HIDDEN[1])).astype(np.float32)
    times = []
    with fo.blas_threads(1):
        for _ in range(count):
            for _ in range(6):
                x @ w
            start = time.perf_counter()
            opt.step(grads)
            times.append(time.perf_counter() - start)
    return {"steps_s": float(np.sum(times)), "steps_p99_us": float(np.percentile(times, 99)) * 1e6,
            "steps_alone": float(opt._plan.steps_alone)}


def loop(rounds: int, blas: int) -> dict[str, float]:
    import fastoptim as fo
    from fastoptim import _bench

    work = _bench.parse_work("model")
    out = {}
    with fo.blas_threads(blas or None):
        for kind in ("sleep", "blas"):
            gels = training_loop.measure(work, training_loop.work_between(kind, 3e-3), rounds)
            out[f"loop_after_{kind}"] = gels["n_threads"]
    return out


def torch_beside(rounds: int) -> dict[str, float]:
    import numpy as np

    import fastoptim as fo
    from fastoptim import _bench

    shapes = _bench.parse_work("model").shapes
    import torch  # after fastoptim, as in a program that imports it first

    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = fo.Adam(params, lr=1e-3)
    tensors = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    theirs = torch.optim.Adam(tensors, lr=1e-3, fused=True)
    a = torch.randn(256, 256)
    adam, matmul = [], []
    for r in range(rounds + 3):
        ours.step(grads)
        start = time.perf_counter()
        a @ a
        middle = time.perf_counter()
        theirs.step()
        end = time.perf_counter()
        if r >= 3:
            matmul.append(middle - start)
            adam.append(end - middle)
    return {"torch_fused_adam_ms": float(np.median(adam)) * 1e3, "torch_matmul_ms": float(np.median(matmul)) * 1e3}


def child(args: argparse.Namespace) -> int:
    if args.child == "single":
        row = single()
    elif args.child == "steps":
        row = steps()
    elif args.child == "demo":
        row = demo(shlex.split(args.demo_args))
    elif args.child == "loop":
        row = loop(args.loop_rounds, args.loop_blas_threads)
    else:
        row = torch_beside(args.torch_rounds)
    print(json.dumps(row), flush=True)
    return 0


# ---- the parent --------------------------------------------------------------------------
def run_cell(condition: str, workload: str, args: argparse.Namespace) -> dict[str, float]:
    parts = condition.split("+")
    env = {k: v for k, v in os.environ.items() if k not in _omp.VARIABLES}
    for part in parts:
        env.update(PARTS[part])
    neighbour = None
    if "busy" in parts:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)
    try:
        command = [sys.executable, __file__, "--child", workload, "--demo-args", args.demo_args,
                   "--loop-rounds", str(args.loop_rounds), "--loop-blas-threads", str(args.loop_blas_threads),
                   "--torch-rounds", str(args.torch_rounds)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if out.returncode != 0:
        raise SystemExit(f"{condition} / {workload} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best(values: list[float], more_is_better: bool) -> float:
    return max(values) if more_is_better else min(values)


def table(runs: dict[str, dict[str, list[float]]], conditions: list[str], *, markdown: bool) -> str:
    """Each condition's best round of every metric, its ratio to the first condition's best,
    and (after m) its median round."""
    metrics = [m for m in METRICS if all(m in runs[c] for c in conditions)]
    rows = [["condition", *(f"{m} ({METRICS[m][1]})" for m in metrics)]]
    for c in conditions:
        cells = [c]
        for m in metrics:
            more = METRICS[m][2]
            value, ref = best(runs[c][m], more), best(runs[conditions[0]][m], more)
            median = sorted(runs[c][m])[len(runs[c][m]) // 2]
            ratio = (value / ref if more else ref / value) if value and ref else None
            cells.append(f"{value:.3g} ({'—' if ratio is None else f'{ratio:.2f}x'}) m {median:.3g}")
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([lines[0], "|" + "---|" * len(rows[0]), *lines[1:]])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(r, widths)))
                     for r in rows)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/thread_policy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--conditions", default=DEFAULT_CONDITIONS, help="comma-separated, see above")
    p.add_argument("--workloads", default="single,demo,loop,torch", help="single, steps, demo, loop, torch")
    p.add_argument("--rounds", type=int, default=3, help="alternated runs of every cell")
    p.add_argument("--demo-args", default="", help="arguments for `fastoptim demo`, as one string")
    p.add_argument("--loop-rounds", type=int, default=150, help="timed steps per metric of the loop workload")
    p.add_argument("--loop-blas-threads", type=int, default=0,
                   help="NumPy's BLAS threads in the loop workload (fo.blas_threads); 0 leaves BLAS as it is")
    p.add_argument("--torch-rounds", type=int, default=200, help="timed steps of the torch workload")
    p.add_argument("--out", type=Path, help="write every run as JSON here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--table", type=Path, help="print the table of a run saved with --out, and nothing else")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(args)
    if args.table is not None:
        saved = json.loads(args.table.read_text())
        print(table(saved["runs"], saved["conditions"], markdown=args.markdown))
        return 0

    conditions = args.conditions.split(",")
    workloads = args.workloads.split(",")
    for c in conditions:
        unknown = [part for part in c.split("+") if part not in PARTS]
        if unknown:
            p.error(f"unknown part {unknown[0]!r} in condition {c!r}; the parts: {', '.join(PARTS)}")
    runs: dict[str, dict[str, list[float]]] = {c: {} for c in conditions}
    for r in range(args.rounds):
        order = conditions[r % len(conditions):] + conditions[:r % len(conditions)]
        for condition in order:
            for workload in workloads:
                row = run_cell(condition, workload, args)
                for key, value in row.items():
                    runs[condition].setdefault(key, []).append(value)
                print(f"round {r + 1} {condition:<20} {workload:<6} " +
                      " ".join(f"{k}={v:.3f}" for k, v in row.items()), file=sys.stderr, flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"conditions": conditions, "demo_args": args.demo_args,
                                        "loop_blas_threads": args.loop_blas_threads, "runs": runs,
                                        "cpus": os.cpu_count()}, indent=1) + "\n")
    print(table(runs, conditions, markdown=args.markdown))
    print(f"best of {args.rounds} alternated rounds; ratios above 1 are faster than {conditions[0]}; "
          f"{os.cpu_count()} CPUs; demo args: {args.demo_args or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
