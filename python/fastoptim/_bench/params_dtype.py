"""``fastoptim bench --params-dtype bfloat16``: AdamW on bfloat16 weights (issue 23) beside the
same step on float32 weights and torch's fused AdamW on bfloat16 tensors, each variant alternated
step by step in one run:

* ``float32``: float32 weights, gradients and state, 28 bytes per element (read p, g, m, v;
  write p, m, v);
* ``bf16 weights+state``: bfloat16 weights, gradients and state (the defaults for bfloat16
  weights: state of the parameter's dtype, stochastic rounding of the weights), 14 bytes;
* ``bf16 nearest``: the same, rounded to nearest even (``stochastic_rounding=False``);
* ``bf16 weights, f32 state``: ``state_dtype="float32"``, 22 bytes;
* ``torch fused bf16``: ``torch.optim.AdamW(fused=True)`` on bfloat16 tensors (its state is
  bfloat16 too), where torch is installed;
* ``float32 probe``: an in-process sweep of the float32 step's bytes (4 reads, 3 writes);
* ``14-byte probe``: the same sweep over half the elements, the bfloat16 layout's bytes in
  the same seven streams.

The probes' arrays hold ones: never-written zeros would read one shared page of zeros and
flatter the probe two-fold.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fastoptim as fo

from .. import _core
from .timing import alternate, save_json, step_figures
from .workloads import Work

FLOAT32, BF16, NEAREST, F32_STATE = "float32", "bf16 weights+state", "bf16 nearest", "bf16 weights, f32 state"
TORCH = "torch fused bf16"
PROBE32, PROBE16 = "float32 probe", "14-byte probe"
STEPS = (FLOAT32, BF16, NEAREST, F32_STATE, TORCH)
BYTES = {FLOAT32: 28, BF16: 14, NEAREST: 14, F32_STATE: 22, TORCH: 14}


def _torch_step(params0: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> Callable[[], Any] | None:
    """torch's fused AdamW on bfloat16 CPU tensors, or None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    params = [torch.nn.Parameter(torch.from_numpy(p.astype(np.float32)).to(torch.bfloat16)) for p in params0]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.astype(np.float32)).to(torch.bfloat16)
    step: Callable[[], Any] = torch.optim.AdamW(params, lr=1e-3, fused=True).step
    return step


def _steps(work: Work, seed: int) -> dict[str, Callable[[], Any]]:
    import ml_dtypes

    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    grads32 = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    grads16 = [g.astype(ml_dtypes.bfloat16) for g in grads32]

    def optimizer(dtype: Any, **options: Any) -> fo.Optimizer:
        return fo.AdamW([p.astype(dtype) for p in params0], lr=1e-3, seed=seed, **options)

    full, bf16 = optimizer(np.float32), optimizer(ml_dtypes.bfloat16)
    nearest = optimizer(ml_dtypes.bfloat16, stochastic_rounding=False)
    f32_state = optimizer(ml_dtypes.bfloat16, state_dtype="float32")
    n = sum(int(np.prod(s)) for s in work.shapes)
    floats = [np.full(n, 1.0, np.float32) for _ in range(4)]
    halves = [a[:(n + 1) // 2] for a in floats]
    threads = fo.get_num_threads()
    steps: dict[str, Callable[[], Any]] = {
        FLOAT32: lambda: full.step(grads32), BF16: lambda: bf16.step(grads16),
        NEAREST: lambda: nearest.step(grads16), F32_STATE: lambda: f32_state.step(grads16),
        PROBE32: lambda: _core.probe(floats, 3, threads), PROBE16: lambda: _core.probe(halves, 3, threads)}
    peer = _torch_step(params0, grads32)
    if peer is not None:
        steps[TORCH] = peer
    return steps


def run_params_dtype(works: Sequence[Work], *, repeats: int, min_time: float, max_repeats: int, max_time: float,
                     warmup: int, seed: int) -> list[dict[str, Any]]:
    """One record per workload: each variant's best and median step; its speed-up over the
    float32 step (best over best, median over median, and the median over the rounds of each
    round's ratio); each step's fraction of its layout's probe (14 bytes: the half-length probe)."""
    records = []
    for work in works:
        times = alternate(_steps(work, seed), warmup, repeats, min_time, max_repeats, max_time)
        figures = {name: step_figures(t) for name, t in times.items()}
        base = figures[FLOAT32]
        for name in STEPS:
            if name not in figures:
                continue
            f = figures[name]
            f["bytes_per_element"] = BYTES[name]
            f["speedup_best"] = base["best_ms"] / f["best_ms"]
            f["speedup_median"] = base["median_ms"] / f["median_ms"]
            f["speedup_paired"] = statistics.median(b / t for t, b in zip(times[name], times[FLOAT32]))
            if BYTES[name] in (14, 28):
                f["of_probe"] = figures[PROBE16 if BYTES[name] == 14 else PROBE32]["best_ms"] / f["best_ms"]
        records.append({"work": work.label, "elements": work.elements, "arrays": len(work.shapes),
                        "probe_ratio": figures[PROBE32]["best_ms"] / figures[PROBE16]["best_ms"],
                        "variants": figures})
    return records


def params_dtype_table(records: Sequence[dict[str, Any]]) -> str:
    head = f"{'work':>6} {'variant':>24} {'B/el':>5} {'best ms':>9} {'median ms':>9} {'speed-up':>8} {'paired':>6} " \
           f"{'of probe':>8}"
    lines = [head, "-" * len(head)]
    for r in records:
        for name in STEPS:
            f = r["variants"].get(name)
            if f is None:
                continue
            probe = f"{f['of_probe']:8.3f}" if "of_probe" in f else f"{'-':>8}"
            lines.append(f"{r['work']:>6} {name:>24} {f['bytes_per_element']:5d} {f['best_ms']:9.3f} "
                         f"{f['median_ms']:9.3f} {f['speedup_best']:8.3f} {f['speedup_paired']:6.3f} {probe}")
        lines.append(f"{r['work']:>6} {'probes: 28 B over 14 B':>24} {'':>5} {r['probe_ratio']:9.3f}")
    return "\n".join(lines)


def main_params_dtype(works: Sequence[Work], out: Path | None, **timing: Any) -> int:
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        print('fastoptim bench --params-dtype bfloat16 needs ml_dtypes: pip install "fastoptim[bf16]"')
        return 2
    records = run_params_dtype(works, **timing)
    print(params_dtype_table(records))
    print()
    print("AdamW, each variant's best and median step alternated step by step in one run; speed-up = the float32 "
          "step's over this one's (paired: the median over the rounds of each round's ratio); of probe = the best "
          "sweep of the same bytes in seven streams (4 read, 3 written) over the step's best: 28 B per element for "
          "float32, 14 B (the sweep over half the elements) for bfloat16 weights and state; the probes' ratio is "
          "what the bytes allow. torch fused bf16 = torch.optim.AdamW(fused=True) on bfloat16 CPU tensors.")
    if out is not None:
        document = {"config": fo.config(), "params_dtype": "bfloat16", "results": records}
        path = save_json(out, "params_dtype.json", document)
        print(f"wrote {path}")
    return 0
