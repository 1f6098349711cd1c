"""Step time and per-rank optimizer memory of DistributedOptimizer and ZeroRedundancyOptimizer
against the plain single-process optimizer.

    python bench/bench_distributed.py [--ranks 1 2 4] [--params 16] [--optimizer adamw] [--steps 20]

It launches one ``mpiexec -n N`` per entry of ``--ranks`` (and one plain process) and prints
a Markdown table. The model is ``--params`` million float32 elements: 1024x1024 matrices and
their 1024-element biases. Each rank steps with its default threads (the node's cores
divided by the ranks), the plain optimizer with all of them. A step is timed from a barrier
to the last rank's return (median of ``--steps``); memory is this rank's optimizer state
(``memory()["state"]``), its gradient shard and message buffers (``memory()["buffers"]``),
and the peak NumPy allocation traced while building the optimizer and taking one step.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw": ("AdamW", dict(lr=1e-3, weight_decay=0.01)), "sgd": ("SGD", dict(lr=0.1, momentum=0.9)),
    "lamb": ("LAMB", dict(lr=1e-3)), "lion": ("Lion", dict(lr=1e-4))}


def model(millions: float) -> list[np.ndarray]:
    layers = max(1, round(millions * 1e6 / (1024 * 1024 + 1024)))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(layers):
        out.append(rng.standard_normal((1024, 1024), dtype=np.float32))
        out.append(rng.standard_normal(1024, dtype=np.float32))
    return out


def timed(step: Any, grads: list[np.ndarray], steps: int, comm: Any = None) -> float:
    """Median seconds of a step, from a barrier to the slowest rank's return."""
    for _ in range(3):
        step(grads)
    times = []
    for _ in range(steps):
        if comm is not None:
            comm.Barrier()
        start = time.perf_counter()
        step(grads)
        elapsed = time.perf_counter() - start
        times.append(comm.allreduce(elapsed, op=_max()) if comm is not None else elapsed)
    return statistics.median(times)


def _max() -> Any:
    from mpi4py import MPI
    return MPI.MAX


def worker(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per setup; under MPI every rank runs it and rank 0 returns the rows."""
    import fastoptim as fo

    name, kwargs = OPTIMIZERS[args.optimizer]
    cls = getattr(fo, name)
    params = model(args.params)
    grads = [np.full_like(p, 1e-3) for p in params]
    rows = []
    if args.plain:
        tracemalloc.start()
        plain = cls(params, **kwargs)
        plain.step(grads)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        state = sum(a.nbytes for slots in plain.state.values() for a in slots.values())
        rows.append(dict(setup=f"plain {name}", ranks=1, threads=fo.get_num_threads(), reduction="-",
                         step=timed(plain.step, grads, args.steps), state=state, buffers=0, peak=peak))
        return rows
    from mpi4py import MPI

    from fastoptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer
    comm = MPI.COMM_WORLD
    for reduction in args.reductions:
        for kind in ("DistributedOptimizer", "ZeroRedundancyOptimizer"):
            tracemalloc.start()
            if kind == "DistributedOptimizer":
                opt: Any = DistributedOptimizer(cls(params, **kwargs), comm, reduction=reduction)
            else:
                opt = ZeroRedundancyOptimizer(params, cls, comm, reduction=reduction, **kwargs)
            opt.step(grads)
            peak = comm.allreduce(tracemalloc.get_traced_memory()[1], op=MPI.MAX)
            tracemalloc.stop()
            step = timed(opt.step, grads, args.steps, comm)
            memory = comm.gather(opt.memory(), root=0)
            if memory is not None:  # rank 0
                rows.append(dict(setup=f"{kind}({name})", ranks=comm.size, threads=opt.num_threads,
                                 reduction=reduction, step=step, state=max(m["state"] for m in memory),
                                 buffers=max(m["buffers"] for m in memory), peak=peak))
            del opt
    return rows


def run(command: list[str], timeout: float) -> str:
    """Run `command` in its own process group; on a timeout kill the whole group."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SystemExit(f"timed out after {timeout} s: {' '.join(command)}") from None
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{out}")
    return out


def table(rows: list[dict[str, Any]]) -> str:
    mib = 2**20
    lines = ["| setup | ranks x threads | reduction | step (ms) | optimizer state / rank (MiB) | "
             "buffers / rank (MiB) | peak traced / rank (MiB) |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['ranks']} x {r['threads']} | {r['reduction']} | {1e3 * r['step']:.1f} | "
                     f"{r['state'] / mib:.1f} | {r['buffers'] / mib:.1f} | {r['peak'] / mib:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2], help="world sizes to run (default 2)")
    parser.add_argument("--params", type=float, default=16, help="million float32 parameters (default 16)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adamw")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--reductions", nargs="+", default=["rank_order", "mpi"], choices=["rank_order", "mpi"])
    parser.add_argument("--timeout", type=float, default=600, help="seconds per launch (default 600)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        rows = worker(args)
        if rows:
            print("ROWS " + json.dumps(rows), flush=True)
        return 0
    from fastoptim.distributed.launcher import mpiexec_command

    launcher = mpiexec_command()
    if launcher is None:
        print("no mpiexec found: pip install mpi4py mpich", file=sys.stderr)
        return 1
    common = ["--params", str(args.params), "--optimizer", args.optimizer, "--steps", str(args.steps),
              "--reductions", *args.reductions]
    script = str(Path(__file__).resolve())
    rows = []
    outputs = [run([sys.executable, script, "--worker", "--plain", *common], args.timeout)]
    for n in args.ranks:
        outputs.append(run([*launcher, "-n", str(n), sys.executable, script, "--worker", *common], args.timeout))
    for out in outputs:
        rows += [row for line in out.splitlines() if line.startswith("ROWS ") for row in json.loads(line[5:])]
    import fastoptim as fo
    print(f"{args.params:g}M float32 parameters, {args.optimizer}, median of {args.steps} steps; "
          f"{os.cpu_count()} CPUs, fastoptim {fo.__version__} ({fo.get_target()})\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
