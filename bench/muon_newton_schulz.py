#!/usr/bin/env python3
"""Muon's Newton–Schulz beside NumPy's bare matmuls of the same shapes, on 1 and 2 BLAS threads.

    python bench/muon_newton_schulz.py                    # 512² to 2048², float32 (about 3 minutes on 2 cores)
    python bench/muon_newton_schulz.py --quick            # small shapes, a few seconds: a smoke run
    python bench/muon_newton_schulz.py --shapes 1024x4096 --threads 1,2,4 --rounds 20 --out ns.json

For each shape (rows x columns, float32) and each thread count, four variants, alternated in one
process round by round (the first variant of a round rotates by one, so drift hits all alike):

* ``matmuls``: the products Newton–Schulz performs and nothing else, on preallocated arrays:
  ``ns_steps`` x (A = X·Xᵀ, B = A·A, Y = B·X) with X the wide m x n orientation (m <= n) of the
  shape, each into its own ``out=`` array;
* ``ns``: ``fastoptim.muon.newton_schulz(u, ‖u‖, (3.4445, -4.775, 2.0315), 5, 1e-7)``: the same
  products plus its scaling, sums and temporaries;
* ``step``: one whole ``fo.Muon`` step on one parameter of the shape (the momentum pass, the
  iteration, the final native pass);
* ``torch``: ``torch.optim.Muon``'s step on the same shape, where torch is importable (torch
  2.13 runs its iteration in bfloat16).

A thread count n is set before each timed call, outside the clock: NumPy's BLAS (through
``fo.blas_threads``, threadpoolctl), fastoptim's threads (``fo.set_num_threads``) and torch's
(``torch.set_num_threads``). One untimed round first, then rounds until ``--max-time`` seconds
per shape are spent (at least ``--min-rounds``, at most ``--rounds``). The table compares best
rounds (this machine's bandwidth drifts; the best round is the least disturbed): ns/mm is the
iteration's best over the bare products', step/ns the step's over the iteration's, torch/step
torch's step over fastoptim's. The JSON (``--out``) holds every variant's best and median and
the paired ratios (the median over rounds of each round's ratio).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fastoptim as fo
except ImportError:  # a source checkout with the extension built in place: use python/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    import fastoptim as fo

from fastoptim import _omp
from fastoptim.muon import newton_schulz

COEFFICIENTS = (3.4445, -4.775, 2.0315)
NS_STEPS, EPS = 5, 1e-7
DEFAULT_SHAPES = "512x512,1024x1024,1024x4096,4096x1024,2048x2048"
QUICK_SHAPES = "128x128,128x512,512x128"
VARIANTS = ("matmuls", "ns", "step", "torch")


def parse_shape(token: str) -> tuple[int, int]:
    rows, sep, cols = token.strip().partition("x")
    try:
        shape = (int(float(rows)), int(float(cols)))
    except ValueError:
        shape = (0, 0)
    if not sep or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is ROWSxCOLUMNS (1024x4096), got {token!r}")
    return shape


def products_flops(shape: tuple[int, int]) -> float:
    """Floating-point operations of the bare products (X·Xᵀ counted as a full product)."""
    m, n = min(shape), max(shape)
    return NS_STEPS * (2.0 * m * m * n + 2.0 * m * m * m + 2.0 * m * m * n)


def variants(shape: tuple[int, int], torch: Any, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    """The four callables for one shape, each on its own arrays."""
    m, n = min(shape), max(shape)
    x = rng.standard_normal((m, n), dtype=np.float32)
    x /= np.float32(np.linalg.norm(x))  # as the iteration's input: ‖X‖ = 1
    gram, mixed, out = np.empty((m, m), np.float32), np.empty((m, m), np.float32), np.empty((m, n), np.float32)

    def matmuls() -> None:
        for _ in range(NS_STEPS):
            np.matmul(x, x.T, out=gram)
            np.matmul(gram, gram, out=mixed)
            np.matmul(mixed, x, out=out)

    u = rng.standard_normal(shape, dtype=np.float32)
    norm = float(np.linalg.norm(u))
    param = rng.standard_normal(shape, dtype=np.float32)
    grad = rng.standard_normal(shape, dtype=np.float32)
    opt = fo.Muon([param])
    steps: dict[str, Callable[[], object]] = {
        "matmuls": matmuls,
        "ns": lambda: newton_schulz(u, norm, COEFFICIENTS, NS_STEPS, EPS),
        "step": lambda: opt.step([grad]),
    }
    if torch is not None:
        tensor = torch.from_numpy(param.copy()).requires_grad_()
        tensor.grad = torch.from_numpy(grad.copy())
        steps["torch"] = torch.optim.Muon([tensor]).step
    return steps


def set_threads(n: int, torch: Any) -> None:
    fo.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def measure(shape: tuple[int, int], threads: list[int], torch: Any, args: argparse.Namespace,
            rng: np.random.Generator) -> dict[tuple[int, str], list[float]]:
    """Seconds of each (threads, variant) per round, alternated; one untimed round first."""
    per_thread = {n: variants(shape, torch, rng) for n in threads}  # each thread count its own arrays and state
    order = [(n, v) for n in threads for v in VARIANTS if v in per_thread[n]]
    times: dict[tuple[int, str], list[float]] = {key: [] for key in order}

    def one_round(r: int, record: bool) -> float:
        began = time.perf_counter()
        k = r % len(order)
        for n, v in order[k:] + order[:k]:
            set_threads(n, torch)
            with fo.blas_threads(n):
                start = time.perf_counter()
                per_thread[n][v]()
                seconds = time.perf_counter() - start
            if record:
                times[(n, v)].append(seconds)
        return time.perf_counter() - began

    round_seconds = one_round(0, record=False)
    rounds = max(args.min_rounds, min(args.rounds, math.floor(args.max_time / max(round_seconds, 1e-9))))
    for r in range(rounds):
        one_round(r, record=True)
    return times


def row(shape: tuple[int, int], n: int, times: dict[tuple[int, str], list[float]]) -> dict[str, Any]:
    mine = {v: times[(n, v)] for v in VARIANTS if (n, v) in times}
    best = {v: min(ts) for v, ts in mine.items()}

    def paired(top: str, bottom: str) -> float | None:
        if top not in mine or bottom not in mine:
            return None
        return statistics.median(a / b for a, b in zip(mine[top], mine[bottom]))

    def ratio(top: str, bottom: str) -> float | None:
        return best[top] / best[bottom] if top in best and bottom in best else None

    return {
        "shape": list(shape), "threads": n, "rounds": len(mine["ns"]),
        "variants": {v: {"best_ms": 1e3 * min(ts), "median_ms": 1e3 * statistics.median(ts)} for v, ts in mine.items()},
        "matmuls_gflops": products_flops(shape) / best["matmuls"] / 1e9,
        "best_ratio": {"ns/matmuls": ratio("ns", "matmuls"), "step/ns": ratio("step", "ns"),
                       "torch/step": ratio("torch", "step")},
        "paired_ratio": {"ns/matmuls": paired("ns", "matmuls"), "step/ns": paired("step", "ns"),
                         "torch/step": paired("torch", "step")},
    }


def _fmt(x: float | None, spec: str) -> str:
    """`x` formatted by `spec` ("6.3f"), or a dash as wide."""
    return format(x, spec) if x is not None else "—".rjust(int(spec.split(".")[0]))


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'shape':>10}  {'thr':>3}  {'rounds':>6}  {'matmuls':>9}  {'GF/s':>6}  {'ns':>9}  {'ns/mm':>6}  " \
           f"{'step':>9}  {'step/ns':>7}  {'torch':>9}  {'torch/step':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = {v: s["best_ms"] for v, s in r["variants"].items()}
        ratios = r["best_ratio"]
        lines.append(f"{'x'.join(map(str, r['shape'])):>10}  {r['threads']:>3}  {r['rounds']:>6}  "
                     f"{ms['matmuls']:9.2f}  {r['matmuls_gflops']:6.1f}  {ms['ns']:9.2f}  "
                     f"{_fmt(ratios['ns/matmuls'], '6.3f')}  {ms['step']:9.2f}  {_fmt(ratios['step/ns'], '7.3f')}  "
                     f"{_fmt(ms.get('torch'), '9.2f')}  {_fmt(ratios['torch/step'], '10.3f')}")
    return "\n".join(lines)


def machine(torch: Any) -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {"cpu": cpu, "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": {"name": blas.get("name"), "version": blas.get("version")},
            "threadpools": [{k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                            for lib in threadpool_info()],
            "torch": None if torch is None else str(torch.__version__), "fastoptim": fo.config(),
            "openmp_wait": _omp.wait_settings(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/muon_newton_schulz.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=None, help=f"comma-separated ROWSxCOLUMNS (default {DEFAULT_SHAPES})")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, alternated round by round")
    p.add_argument("--rounds", type=int, default=15, help="at most this many timed rounds per shape")
    p.add_argument("--min-rounds", type=int, default=3, help="at least this many timed rounds per shape")
    p.add_argument("--max-time", type=float, default=20.0,
                   help="seconds of timed rounds per shape, all variants and thread counts together "
                        "(--min-rounds wins)")
    p.add_argument("--no-torch", action="store_true", help="leave torch.optim.Muon out")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run of a few seconds: shapes {QUICK_SHAPES} (unless --shapes), 3 rounds")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrays")
    p.add_argument("--out", type=Path, help="write the rows and the machine as JSON here")
    args = p.parse_args(argv)
    try:
        shapes = [parse_shape(t) for t in (args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)).split(",")
                  if t.strip()]
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except (argparse.ArgumentTypeError, ValueError) as error:
        p.error(str(error))
    if not threads or min(threads) < 1 or args.rounds < 1 or args.min_rounds < 1:
        p.error("--threads, --rounds and --min-rounds must be >= 1")
    if args.quick:
        args.rounds, args.min_rounds = 3, 3
    torch, why = None, "left out (--no-torch)" if args.no_torch else "not importable"
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        import torch as torch_module

        torch = torch_module if hasattr(torch_module.optim, "Muon") else None
        why = f"{torch_module.__version__} has no torch.optim.Muon"
    previous = (fo.get_num_threads(), None if torch is None else torch.get_num_threads())
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        for shape in shapes:
            times = measure(shape, threads, torch, args, rng)
            rows.extend(row(shape, n, times) for n in threads)
            print(f"  {'x'.join(map(str, shape))}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    finally:
        fo.set_num_threads(previous[0])
        if torch is not None and previous[1] is not None:
            torch.set_num_threads(previous[1])
    print(table(rows))
    info = machine(torch)
    print(f"best round in ms, float32, ns_steps={NS_STEPS}; thr = NumPy's BLAS ({info['blas']['name']} "
          f"{info['blas']['version']}), fastoptim's and torch's threads; GF/s: the bare products' "
          f"(X·Xᵀ counted in full); torch {info['torch'] + ', Newton–Schulz in bfloat16' if info['torch'] else why}; "
          f"{info['cpu']}; OpenMP wait: {_omp.wait_text() or 'its defaults'}; {time.perf_counter() - began:.0f} s")
    if args.out is not None:
        document = {"machine": info, "settings": {"shapes": [list(s) for s in shapes], "threads": threads,
                                                  "rounds": args.rounds, "min_rounds": args.min_rounds,
                                                  "max_time": args.max_time, "seed": args.seed,
                                                  "ns_steps": NS_STEPS, "coefficients": COEFFICIENTS},
                    "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
