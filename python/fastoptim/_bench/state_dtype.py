"""``fastoptim bench --state-dtype bfloat16``: float32 AdamW with its state stored as bfloat16
(issue 21) beside the same step with float32 state, each variant alternated step by step in
one run:

* ``float32 state``: the plain step, 28 bytes per element (read p, g, m, v; write p, m, v);
* ``bfloat16 state``: ``state_dtype="bfloat16"``, rounded to nearest even, 20 bytes;
* ``bfloat16 stochastic``: the same with ``state_rounding="stochastic"``;
* ``float32 probe``: an in-process sweep of the float32 step's bytes (4 reads, 3 writes);
* ``bfloat16 probe``: a sweep of the bfloat16 layout's own bytes: p and g read, p written, and
  two 16-bit arrays read and written (``_core.probe`` with trailing uint16 arrays).

The probes' arrays hold ones: never-written zeros would read one shared page of zeros and
flatter the probe two-fold.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fastoptim as fo

from .. import _core
from .timing import alternate, step_figures
from .workloads import Work

VARIANTS = ("float32 state", "bfloat16 state", "bfloat16 stochastic", "float32 probe", "bfloat16 probe")


def _steps(work: Work, seed: int, state_dtype: str) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]

    def optimizer(**options: Any) -> fo.Optimizer:
        return fo.AdamW([p.copy() for p in params0], lr=1e-3, **options)

    native = optimizer()
    nearest = optimizer(state_dtype=state_dtype)
    stochastic = optimizer(state_dtype=state_dtype, state_rounding="stochastic", seed=seed)
    n = sum(int(np.prod(s)) for s in work.shapes)
    floats = [np.full(n, 1.0, np.float32) for _ in range(4)]
    halves = [np.full(n, 0x3F80, np.uint16) for _ in range(2)]  # bfloat16 ones
    threads = fo.get_num_threads()
    return {
        "float32 state": lambda: native.step(grads),
        "bfloat16 state": lambda: nearest.step(grads),
        "bfloat16 stochastic": lambda: stochastic.step(grads),
        "float32 probe": lambda: _core.probe(floats, 3, threads),
        "bfloat16 probe": lambda: _core.probe(floats[:2] + halves, 1, threads),
    }


def run_state_dtype(works: Sequence[Work], state_dtype: str, *, repeats: int, min_time: float, max_repeats: int,
                    max_time: float, warmup: int, seed: int) -> list[dict[str, Any]]:
    """One record per workload: each variant's best and median step; the speed-up of bfloat16
    state over float32 state (best over best, median over median, and the median over the
    rounds of each round's ratio); each step's fraction of its own layout's probe."""
    records = []
    for work in works:
        times = alternate(_steps(work, seed, state_dtype), warmup, repeats, min_time, max_repeats, max_time)
        figures = {name: step_figures(times[name]) for name in VARIANTS}
        base = figures["float32 state"]
        for name in ("bfloat16 state", "bfloat16 stochastic"):
            f = figures[name]
            f["speedup_best"] = base["best_ms"] / f["best_ms"]
            f["speedup_median"] = base["median_ms"] / f["median_ms"]
            f["speedup_paired"] = statistics.median(b / t for t, b in zip(times[name], times["float32 state"]))
            f["of_probe"] = figures["bfloat16 probe"]["best_ms"] / f["best_ms"]
        base["of_probe"] = figures["float32 probe"]["best_ms"] / base["best_ms"]
        records.append({"work": work.label, "elements": work.elements, "arrays": len(work.shapes),
                        "state_bytes_per_element": {"float32 state": 8, "bfloat16 state": 4},
                        "variants": figures})
    return records


def state_dtype_table(records: Sequence[dict[str, Any]]) -> str:
    head = (f"{'work':>6} | {'f32 ms':>8} {'of probe':>8} | {'bf16 ms':>8} {'speed-up':>8} {'paired':>6} "
            f"{'of probe':>8} | {'stoch ms':>8} {'speed-up':>8} {'of probe':>8}")
    lines = [head, "-" * len(head)]
    for r in records:
        v = r["variants"]
        f32, bf16, sr = v["float32 state"], v["bfloat16 state"], v["bfloat16 stochastic"]
        lines.append(f"{r['work']:>6} | {f32['best_ms']:8.3f} {f32['of_probe']:8.3f} | {bf16['best_ms']:8.3f} "
                     f"{bf16['speedup_best']:8.3f} {bf16['speedup_paired']:6.3f} {bf16['of_probe']:8.3f} | "
                     f"{sr['best_ms']:8.3f} {sr['speedup_best']:8.3f} {sr['of_probe']:8.3f}")
    return "\n".join(lines)


def main_state_dtype(works: Sequence[Work], state_dtype: str, out: Path | None, **timing: Any) -> int:
    records = run_state_dtype(works, state_dtype, **timing)
    print(state_dtype_table(records))
    print()
    print("Best step of each variant (alternated step by step in one run), float32 AdamW; speed-up = float32 "
          "state's best over this one's (paired: the median over the rounds of each round's ratio); of probe = "
          "the best sweep of the layout's own bytes over the step's best (float32 state: 4 reads, 3 writes of "
          "4 bytes; bfloat16 state: p, g read and p written at 4 bytes, m, v read and written at 2).")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "state_dtype.json"
        path.write_text(json.dumps({"config": fo.config(), "state_dtype": state_dtype, "results": records},
                                   indent=1, default=str))
        print(f"wrote {path}")
    return 0
