"""``fastoptim bench --state-dtype bfloat16|int8``: float32 AdamW with its state stored as
bfloat16 (issue 21) or as 8-bit block-wise codes (issue 22) beside the same step with float32
state, each variant alternated step by step in one run. For bfloat16:

* ``float32 state``: the plain step, 28 bytes per element (read p, g, m, v; write p, m, v);
* ``bfloat16 state``: ``state_dtype="bfloat16"``, rounded to nearest even, 20 bytes;
* ``bfloat16 stochastic``: the same with ``state_rounding="stochastic"``;
* ``float32 probe``: an in-process sweep of the float32 step's bytes (4 reads, 3 writes);
* ``bfloat16 probe``: a sweep of the bfloat16 layout's own bytes: p and g read, p written, and
  two 16-bit arrays read and written (``_core.probe`` with trailing uint16 arrays).

For int8:

* ``float32 state`` and ``float32 probe`` as above;
* ``int8 state``: ``state_dtype="int8"``, 16 bytes per element (m, v one byte each, read and
  written) and 4 bytes of absmax per 256 elements and slot;
* ``int8 probe``: p and g read, p written at 4 bytes, and one uint16 array read and written:
  the two code arrays' bytes in one stream (``_core.probe`` has no uint8 streams);
* ``bitsandbytes Adam8bit`` (where bitsandbytes and torch are installed, up to 1e7 elements):
  its block-wise 8-bit Adam on torch CPU tensors, the peer the issue names.

The probes' arrays hold ones: never-written zeros would read one shared page of zeros and
flatter the probe two-fold.
"""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fastoptim as fo

from .. import _core
from .timing import alternate, save_json, step_figures
from .workloads import Work

BFLOAT16_VARIANTS = ("float32 state", "bfloat16 state", "bfloat16 stochastic", "float32 probe", "bfloat16 probe")
INT8_VARIANTS = ("float32 state", "int8 state", "float32 probe", "int8 probe")
BNB = "bitsandbytes Adam8bit"
BNB_MAX_ELEMENTS = 10_000_000  # 0.06-0.09 Gel/s: larger steps take seconds each


def _bitsandbytes_step(params0: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> Callable[[], Any] | None:
    """bitsandbytes' Adam8bit over torch CPU tensors, or None where it is not installed."""
    try:
        bnb: Any = importlib.import_module("bitsandbytes")  # untyped
        import torch
    except ImportError:
        return None
    params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params0]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g)
    step: Callable[[], Any] = bnb.optim.Adam8bit(params, lr=1e-3).step
    return step


def _steps(work: Work, seed: int, state_dtype: str) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]

    def optimizer(**options: Any) -> fo.Optimizer:
        return fo.AdamW([p.copy() for p in params0], lr=1e-3, **options)

    native = optimizer()
    compressed = optimizer(state_dtype=state_dtype)
    n = sum(int(np.prod(s)) for s in work.shapes)
    floats = [np.full(n, 1.0, np.float32) for _ in range(4)]
    threads = fo.get_num_threads()
    steps: dict[str, Callable[[], Any]] = {"float32 state": lambda: native.step(grads),
                                           f"{state_dtype} state": lambda: compressed.step(grads),
                                           "float32 probe": lambda: _core.probe(floats, 3, threads)}
    if state_dtype == "bfloat16":
        stochastic = optimizer(state_dtype=state_dtype, state_rounding="stochastic", seed=seed)
        halves = [np.full(n, 0x3F80, np.uint16) for _ in range(2)]  # bfloat16 ones
        steps["bfloat16 stochastic"] = lambda: stochastic.step(grads)
        steps["bfloat16 probe"] = lambda: _core.probe(floats[:2] + halves, 1, threads)
    else:
        codes = np.full(n, 0x3F80, np.uint16)  # two uint8 code arrays' bytes
        steps["int8 probe"] = lambda: _core.probe(floats[:2] + [codes], 1, threads)
        peer = _bitsandbytes_step(params0, grads) if work.elements <= BNB_MAX_ELEMENTS else None
        if peer is not None:
            steps[BNB] = peer
    return steps


def run_state_dtype(works: Sequence[Work], state_dtype: str, *, repeats: int, min_time: float, max_repeats: int,
                    max_time: float, warmup: int, seed: int) -> list[dict[str, Any]]:
    """One record per workload: each variant's best and median step; the speed-up of bfloat16
    state over float32 state (best over best, median over median, and the median over the
    rounds of each round's ratio); each step's fraction of its own layout's probe."""
    records = []
    compressed = ("bfloat16 state", "bfloat16 stochastic") if state_dtype == "bfloat16" else ("int8 state",)
    for work in works:
        times = alternate(_steps(work, seed, state_dtype), warmup, repeats, min_time, max_repeats, max_time)
        figures = {name: step_figures(t) for name, t in times.items()}
        base = figures["float32 state"]
        for name in compressed + ((BNB,) if BNB in times else ()):
            f = figures[name]
            f["speedup_best"] = base["best_ms"] / f["best_ms"]
            f["speedup_median"] = base["median_ms"] / f["median_ms"]
            f["speedup_paired"] = statistics.median(b / t for t, b in zip(times[name], times["float32 state"]))
            f["of_probe"] = figures[f"{state_dtype} probe"]["best_ms"] / f["best_ms"]
        base["of_probe"] = figures["float32 probe"]["best_ms"] / base["best_ms"]
        if BNB in times:
            figures[BNB]["int8_over_this"] = figures[BNB]["best_ms"] / figures["int8 state"]["best_ms"]
        state_bytes = {"float32 state": 8, "bfloat16 state": 4} if state_dtype == "bfloat16" else {
            "float32 state": 8, "int8 state": 2 + 8 / 256}
        records.append({"work": work.label, "elements": work.elements, "arrays": len(work.shapes),
                        "state_bytes_per_element": state_bytes, "variants": figures})
    return records


def int8_table(records: Sequence[dict[str, Any]]) -> str:
    head = (f"{'work':>6} | {'f32 ms':>8} {'of probe':>8} | {'int8 ms':>8} {'speed-up':>8} {'paired':>6} "
            f"{'of probe':>8} | {'bnb ms':>8} {'int8 x':>7}")
    lines = [head, "-" * len(head)]
    for r in records:
        v = r["variants"]
        f32, q = v["float32 state"], v["int8 state"]
        peer = f"{v[BNB]['best_ms']:8.1f} {v[BNB]['int8_over_this']:7.1f}" if BNB in v else f"{'-':>8} {'-':>7}"
        lines.append(f"{r['work']:>6} | {f32['best_ms']:8.3f} {f32['of_probe']:8.3f} | {q['best_ms']:8.3f} "
                     f"{q['speedup_best']:8.3f} {q['speedup_paired']:6.3f} {q['of_probe']:8.3f} | {peer}")
    return "\n".join(lines)


def state_dtype_table(records: Sequence[dict[str, Any]]) -> str:
    if "int8 state" in records[0]["variants"]:
        return int8_table(records)
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
          "4 bytes; bfloat16 state: p, g read and p written at 4 bytes, m, v read and written at 2; int8 state: "
          "the same with m and v at 1 byte, probed as one 2-byte stream); bnb = bitsandbytes' Adam8bit on torch "
          "CPU tensors (where installed, up to 1e7 elements), int8 x = its best over int8 state's.")
    if out is not None:
        document = {"config": fo.config(), "state_dtype": state_dtype, "results": records}
        path = save_json(out, "state_dtype.json", document)
        print(f"wrote {path}")
    return 0
