"""``fastoptim bench --pipeline``: the rest of a training step around the update (issues 19 and
20), float32 AdamW, each variant alternated step by step in one run:

* ``step``: the plain step, ``opt.step(grads)``;
* ``clip``: ``max_grad_norm`` (one read-only norm pass, the coefficient folded into the update);
* ``clip+scale+skip``: ``max_grad_norm``, ``grad_scale`` and ``skip_nonfinite`` together;
* ``clip+ema``: ``max_grad_norm`` and ``ema_decay`` (the EMA updated in the update's sweep);
* ``numpy``: the same clipping written as users write it around the step (the baseline below);
* ``numpy+ema``: that baseline, and an EMA of the weights written the same way after the step;
* ``accumulate``: ``opt.accumulate(grads)``, one micro-batch added into the buffers;
* ``accumulate probe``: an in-process sweep of the bytes ``accumulate`` moves (two reads, one
  write);
* ``clip+ema probe``: sweeps of the bytes ``clip+ema`` moves: one read (the norm), then five
  reads and four writes (p, g, m, v and the EMA read; p, m, v and the EMA written), the
  fastest that variant could be on this machine.

The probes' arrays hold ones: never-written zeros would read one shared page of zeros and
flatter the probe two-fold.

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

from .. import _core
from .timing import alternate, step_figures
from .workloads import Work

VARIANTS = ("step", "clip", "clip+scale+skip", "clip+ema", "numpy", "numpy+ema", "accumulate", "accumulate probe",
            "clip+ema probe")
LOSS_SCALE = 1024.0
EMA_DECAY = 0.999


def numpy_clip_then_step(opt: fo.Optimizer, grads: Sequence[np.ndarray], max_norm: float) -> None:
    """The baseline: global-norm clipping in NumPy, as users write it, then the step."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1.0:
        for g in grads:
            g *= coefficient
    opt.step(grads)


def numpy_ema(ema: Sequence[np.ndarray], params: Sequence[np.ndarray], decay: float) -> None:
    """An EMA of the weights written the same way: ``ema ← d·ema + (1 − d)·p``, in place where
    NumPy allows (``(1 − d)·p`` is a temporary)."""
    for e, p in zip(ema, params):
        e *= decay
        e += (1.0 - decay) * p


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
    clip_ema, baseline_ema = optimizer(max_grad_norm=limit, ema_decay=EMA_DECAY), optimizer()
    ema_params = [p for g in baseline_ema.param_groups for p in g["params"]]
    ema = [p.copy() for p in ema_params]
    ema_grads = [g.copy() for g in grads]
    summing = optimizer()
    swept = [np.full(sum(int(np.prod(s)) for s in work.shapes), 1.0, np.float32) for _ in range(5)]
    threads = fo.get_num_threads()

    def clip_ema_probe() -> None:
        _core.probe(swept[:1], 0, threads)
        _core.probe(swept, 4, threads)

    def numpy_with_ema() -> None:
        numpy_clip_then_step(baseline_ema, ema_grads, limit)
        numpy_ema(ema, ema_params, EMA_DECAY)

    return {
        "step": lambda: plain.step(grads),
        "clip": lambda: clip.step(grads),
        "clip+scale+skip": lambda: full.step(scaled, grad_scale=LOSS_SCALE),
        "clip+ema": lambda: clip_ema.step(grads),
        "numpy": lambda: numpy_clip_then_step(baseline, numpy_grads, limit),
        "numpy+ema": numpy_with_ema,
        "accumulate": lambda: summing.accumulate(grads),
        "accumulate probe": lambda: _core.probe(swept[:2], 1, threads),
        "clip+ema probe": clip_ema_probe,
    }


def run_pipeline(works: Sequence[Work], *, repeats: int, min_time: float, max_repeats: int, max_time: float,
                 warmup: int, seed: int) -> list[dict[str, Any]]:
    """One record per workload: each variant's best and median step, and their ratios to the
    plain step: best to best, median to median, and the median over the rounds of each round's
    ratio (a round's steps run back to back, so a drift of the machine's speed hits both)."""
    records = []
    for work in works:
        times = alternate(_steps(work, seed), warmup, repeats, min_time, max_repeats, max_time)
        figures = {name: step_figures(times[name]) for name in VARIANTS}
        base = figures["step"]
        for name in VARIANTS:
            figures[name]["best_vs_step"] = figures[name]["best_ms"] / base["best_ms"]
            figures[name]["median_vs_step"] = figures[name]["median_ms"] / base["median_ms"]
            figures[name]["paired_vs_step"] = statistics.median(t / b for t, b in zip(times[name], times["step"]))
        records.append({"work": work.label, "elements": work.elements, "arrays": len(work.shapes),
                        "variants": figures})
    return records


def pipeline_table(records: Sequence[dict[str, Any]]) -> str:
    head = (f"{'work':>6} | {'step ms':>8} | {'clip /step':>10} {'+scale+skip':>11} {'clip+ema':>8} | "
            f"{'numpy/clip':>10} {'+ema/clip+ema':>13} {'+ema/probe':>10} | {'accum ms':>8} {'of probe':>8}")
    lines = [head, "-" * len(head)]
    for r in records:
        v = r["variants"]
        best = {name: v[name]["best_ms"] for name in VARIANTS}
        lines.append(f"{r['work']:>6} | {best['step']:8.3f} | {v['clip']['best_vs_step']:10.3f} "
                     f"{v['clip+scale+skip']['best_vs_step']:11.3f} {v['clip+ema']['best_vs_step']:8.3f} | "
                     f"{best['numpy'] / best['clip']:10.2f} {best['numpy+ema'] / best['clip+ema']:13.2f} "
                     f"{best['numpy+ema'] / best['clip+ema probe']:10.2f} | "
                     f"{best['accumulate']:8.3f} {best['accumulate probe'] / best['accumulate']:8.3f}")
    return "\n".join(lines)


def main_pipeline(works: Sequence[Work], out: Path | None, **timing: Any) -> int:
    records = run_pipeline(works, **timing)
    print(pipeline_table(records))
    print()
    print("Best step of each variant (alternated step by step in one run), float32 AdamW; /step = over the plain "
          "step's best; numpy = np.vdot norms and in-place scaling around the plain step "
          "(fastoptim._bench.pipeline.numpy_clip_then_step), +ema = and numpy_ema after it; +ema/probe = the "
          "NumPy pipeline with EMA over the probe of clip+ema's bytes (the most any fused step could gain); of "
          "probe = the probe's best sweep of accumulate's bytes (2 reads, 1 write) over accumulate's best.")
    for variant in ("clip", "clip+ema"):
        for key, what in (("median_vs_step", "median over the plain step's median"),
                          ("paired_vs_step", "median over the rounds of each round's ratio to its plain step")):
            shown = ", ".join(f"{r['work']} {r['variants'][variant][key]:.3f}" for r in records)
            print(f"{variant}, {what}: {shown}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pipeline.json"
        path.write_text(json.dumps({"config": fo.config(), "results": records}, indent=1, default=str))
        print(f"wrote {path}")
    return 0
