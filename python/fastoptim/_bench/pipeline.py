"""``fastoptim bench --pipeline``: the gradient side of a training step (issue 19), float32 AdamW,
each variant alternated step by step in one run:

* ``step``: the plain step, ``opt.step(grads)``;
* ``clip``: ``max_grad_norm`` (one read-only norm pass, the coefficient folded into the update);
* ``clip+scale+skip``: ``max_grad_norm``, ``grad_scale`` and ``skip_nonfinite`` together;
* ``numpy``: the same clipping written as users write it around the step (the baseline below).

Every variant's limit is half the gradients' norm, so every step clips. The NumPy baseline's
gradients settle just under the limit after its first step, and it scales them again every
step (the coefficient stays just below 1), so its every step does the full work.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fastoptim as fo

from .timing import alternate
from .workloads import Work

VARIANTS = ("step", "clip", "clip+scale+skip", "numpy")
LOSS_SCALE = 1024.0


def numpy_clip_then_step(opt: fo.Optimizer, grads: Sequence[np.ndarray], max_norm: float) -> None:
    """The baseline: global-norm clipping in NumPy, as users write it, then the step."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1.0:
        for g in grads:
            g *= coefficient
    opt.step(grads)


def _steps(work: Work, seed: int) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in work.shapes]
    limit = 0.5 * math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    scaled = [g * np.float32(LOSS_SCALE) for g in grads]
    numpy_grads = [g.copy() for g in grads]

    def optimizer(**options: Any) -> fo.Optimizer:
        return fo.AdamW([p.copy() for p in params0], lr=1e-3, **options)

    plain, clip = optimizer(), optimizer(max_grad_norm=limit)
    full, baseline = optimizer(max_grad_norm=limit, skip_nonfinite=True), optimizer()
    return {
        "step": lambda: plain.step(grads),
        "clip": lambda: clip.step(grads),
        "clip+scale+skip": lambda: full.step(scaled, grad_scale=LOSS_SCALE),
        "numpy": lambda: numpy_clip_then_step(baseline, numpy_grads, limit),
    }


def _figures(times: list[float]) -> dict[str, float]:
    return {"best_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times), "steps": len(times)}


def run_pipeline(works: Sequence[Work], *, repeats: int, min_time: float, max_repeats: int, max_time: float,
                 warmup: int, seed: int) -> list[dict[str, Any]]:
    """One record per workload: each variant's best and median step, and their ratios to the
    plain step: best to best, median to median, and the median over the rounds of each round's
    ratio (a round's steps run back to back, so a drift of the machine's speed hits both)."""
    records = []
    for work in works:
        times = alternate(_steps(work, seed), warmup, repeats, min_time, max_repeats, max_time)
        figures = {name: _figures(times[name]) for name in VARIANTS}
        base = figures["step"]
        for name in VARIANTS:
            figures[name]["best_vs_step"] = figures[name]["best_ms"] / base["best_ms"]
            figures[name]["median_vs_step"] = figures[name]["median_ms"] / base["median_ms"]
            figures[name]["paired_vs_step"] = statistics.median(t / b for t, b in zip(times[name], times["step"]))
        records.append({"work": work.label, "elements": work.elements, "arrays": len(work.shapes),
                        "variants": figures})
    return records


def pipeline_table(records: Sequence[dict[str, Any]]) -> str:
    head = (f"{'work':>6} | {'step ms':>8} | {'clip ms':>8} {'/step':>6} | {'+scale+skip':>11} {'/step':>6} | "
            f"{'numpy ms':>9} {'/step':>6} | {'numpy/clip':>10}")
    lines = [head, "-" * len(head)]
    for r in records:
        v = r["variants"]
        lines.append(f"{r['work']:>6} | {v['step']['best_ms']:8.3f} | {v['clip']['best_ms']:8.3f} "
                     f"{v['clip']['best_vs_step']:6.3f} | {v['clip+scale+skip']['best_ms']:11.3f} "
                     f"{v['clip+scale+skip']['best_vs_step']:6.3f} | {v['numpy']['best_ms']:9.3f} "
                     f"{v['numpy']['best_vs_step']:6.3f} | {v['numpy']['best_ms'] / v['clip']['best_ms']:10.2f}")
    return "\n".join(lines)


def main_pipeline(works: Sequence[Work], out: Path | None, **timing: Any) -> int:
    records = run_pipeline(works, **timing)
    print(pipeline_table(records))
    print()
    print("Best step of each variant (alternated step by step in one run), float32 AdamW; /step = over the plain "
          "step's best; numpy = np.vdot norms and in-place scaling around the plain step "
          "(fastoptim._bench.pipeline.numpy_clip_then_step).")
    for key, what in (("median_vs_step", "median over the plain step's median"),
                      ("paired_vs_step", "median over the rounds of each round's ratio to its plain step")):
        shown = ", ".join(f"{r['work']} {r['variants']['clip'][key]:.3f}" for r in records)
        print(f"clip, {what}: {shown}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pipeline.json"
        path.write_text(json.dumps({"config": fo.config(), "results": records}, indent=1, default=str))
        print(f"wrote {path}")
    return 0
