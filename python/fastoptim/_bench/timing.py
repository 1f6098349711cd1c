"""Timing: the peers alternated step by step, and one workload's record from their times.

:func:`alternate` times one step of each peer in turn, rotating who goes first; :func:`measure`
runs it for one (rule, dtype, work), in groups where memory cannot hold every peer at once
(:func:`plan_groups`), and turns the times into throughputs, ratios and each peer's deviation
from fastoptim. :class:`Settings` holds the run's options.
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .numpy_peer import Array
from .peers import _EXTRA_ARRAYS, Running, _Env
from .rules import Rule
from .workloads import Work


@dataclass
class Settings:
    rules: list[str]
    works: list[Work]
    dtypes: list[str]
    peers: list[str]
    threads: int
    repeats: int = 5
    min_time: float = 0.2
    max_repeats: int = 500
    max_time: float = 8.0
    warmup: int = 3
    seed: int = 0
    out: Path | None = None
    plot: bool = True
    warm_cache: bool = True
    progress: bool = True


def alternate(steps: dict[str, Callable[[], object]], warmup: int, repeats: int, min_time: float, max_repeats: int,
              max_time: float, warm_cache: bool = True) -> dict[str, list[float]]:
    """Time one step of each peer in turn, `warmup` untimed rounds first, then enough rounds for
    the fastest peer's steps to add up to `min_time` (at least `repeats`, at most `max_repeats`
    and what fits in `max_time`). The starting peer rotates each round. With `warm_cache`, each
    timed step follows an untimed step of the same peer, so arrays that fit in the caches are in
    them, as in a training loop that steps one optimizer; without it, the peers evict each
    other. Returns seconds per step."""
    names = list(steps)
    clock = time.perf_counter
    last = dict.fromkeys(names, 0.0)
    enabled = gc.isenabled()
    gc.disable()  # no collection inside a timed step
    try:
        for _ in range(max(warmup, 1)):
            for name in names:
                start = clock()
                steps[name]()
                last[name] = clock() - start
        fastest, round_time = max(min(last.values()), 1e-9), max(sum(last.values()), 1e-9)
        rounds = min(math.ceil(min_time / fastest), max_repeats, int(max_time / round_time))
        rounds = max(rounds, repeats, 1)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                step = steps[name]
                if warm_cache:
                    step()
                start = clock()
                step()
                times[name].append(clock() - start)
        return times
    finally:
        if enabled:
            gc.enable()


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def plan_groups(peers: Sequence[str], bytes_per_array: int, rule: Rule, budget: int | None) -> list[list[str]]:
    """Peers that are alternated together. All of them while their arrays fit in `budget`;
    else several groups, each with fastoptim and the probe (the references) beside as many
    others as fit."""
    state_arrays = max(r for r, _ in rule.passes)

    def cost(peer: str) -> int:
        return (state_arrays + _EXTRA_ARRAYS[peer]) * bytes_per_array

    base_cost = 2 * bytes_per_array  # the starting values every peer copies
    if budget is None or base_cost + sum(cost(p) for p in peers) <= budget:
        return [list(peers)]
    anchors = [p for p in peers if p in ("fastoptim", "probe")]
    others = [p for p in peers if p not in anchors]
    groups: list[list[str]] = []
    while others:
        group, used = list(anchors), base_cost + sum(cost(p) for p in anchors)
        while others and (used + cost(others[0]) <= budget or len(group) == len(anchors)):
            used += cost(others[0])
            group.append(others.pop(0))
        groups.append(group)
    return groups or [anchors]


def _stats(times: list[float], elements: int) -> dict[str, Any]:
    ordered = sorted(times)
    q1, median, q3 = (float(np.quantile(ordered, q)) for q in (0.25, 0.5, 0.75))
    return {"gels": elements / median / 1e9, "median_s": median, "q1_s": q1, "q3_s": q3, "min_s": ordered[0],
            "steps": len(times)}


def _deviation(params: list[Array], reference: list[Array], start: list[Array]) -> float:
    """Largest |peer − fastoptim| over the largest distance fastoptim moved: 0 when identical."""
    def largest(x: Array, y: Array) -> float:
        d = np.subtract(x, y)
        return float(np.max(np.abs(d, out=d)))

    diff = max(largest(a, b) for a, b in zip(params, reference))
    moved = max(largest(b, s) for b, s in zip(reference, start))
    return diff / moved if moved > 0 else (0.0 if diff == 0 else math.inf)


def measure(rule: Rule, dtype: str, work: Work, settings: Settings, env: _Env,
            status: Callable[[str], None]) -> dict[str, Any]:
    """Every peer on one (rule, dtype, work), alternated; one record of the JSON."""
    np_dtype = np.dtype(dtype)
    rng = np.random.default_rng(settings.seed)
    if rule.matrices:  # a size of N elements as a near-square matrix (Adafactor's factored path)
        work = work.as_matrix()
    status("starting values")
    params0 = [rng.standard_normal(s, dtype=np_dtype) for s in work.shapes]
    grads0 = [rng.standard_normal(s, dtype=np_dtype) for s in work.shapes]
    record: dict[str, Any] = {
        "rule": rule.name, "dtype": dtype, "work": work.label, "elements": work.elements,
        "arrays": len(work.shapes), "shape": list(work.shapes[0]) if len(work.shapes) == 1 else None,
        "kwargs": rule.kwargs, "traffic": [list(p) for p in rule.passes],
        "bytes_per_element": rule.bytes_per_element(dtype), "peers": {}, "skipped": {}}
    runnable = []
    for peer in settings.peers:
        reason = env.problem(peer, rule, dtype)
        if reason is None:
            runnable.append(peer)
        else:
            record["skipped"][peer] = reason
    bytes_per_array = work.elements * np_dtype.itemsize
    budget = _mem_available()
    groups = plan_groups(runnable, bytes_per_array, rule, None if budget is None else int(budget * 0.8))
    record["groups"] = groups
    warmup = max(settings.warmup, rule.steady_after)
    record["warmup"] = warmup
    pooled: dict[str, list[float]] = {}
    deviations: dict[str, float] = {}
    taken = alone = 0  # fastoptim's steps, and those its thread backoff kept to one thread
    counted = False  # whether fastoptim counts them (a PerArrayOptimizer has no plan that does)
    for g, group in enumerate(groups):
        where = f" (group {g + 1}/{len(groups)})" if len(groups) > 1 else ""
        running: dict[str, Running] = {}
        try:
            status(f"setting up{where}")
            for peer in group:
                try:
                    running[peer] = env.build(peer, rule, params0, grads0)
                except Exception as error:  # noqa: BLE001  (a peer that fails to start is skipped, saying why)
                    record["skipped"][peer] = f"failed to start: {type(error).__name__}: {error}"
            if not running:
                continue
            status(f"timing {len(running)} peers{where}")
            times = alternate({p: r.step for p, r in running.items()}, warmup, settings.repeats, settings.min_time,
                              settings.max_repeats, settings.max_time, settings.warm_cache)
            for peer, ts in times.items():
                pooled.setdefault(peer, []).extend(ts)
            reference = running.get("fastoptim")
            if reference is not None and reference.thread_use is not None:
                steps, lone = reference.thread_use()
                taken, alone, counted = taken + steps, alone + lone, True
            if reference is not None and reference.params is not None:
                for peer, r in running.items():
                    if r.params is not None and peer != "fastoptim":
                        deviations[peer] = _deviation(r.params, reference.params, params0)
        finally:
            running.clear()
            gc.collect()
    del params0, grads0
    for peer in settings.peers:
        if peer in pooled:
            record["peers"][peer] = _stats(pooled[peer], work.elements)
            if peer in deviations:
                record["peers"][peer]["deviation"] = deviations[peer]
    if "fastoptim" in record["peers"] and counted:
        record["peers"]["fastoptim"].update(steps_taken=taken, steps_alone=alone)
    record["repeats"] = max((len(ts) for ts in pooled.values()), default=0)
    gels = {peer: s["gels"] for peer, s in record["peers"].items()}
    fused, probe = gels.get("torch_fused"), gels.get("probe")
    record["ratio_to_torch_fused"] = {p: v / fused for p, v in gels.items()} if fused else None
    record["fraction_of_probe"] = {p: v / probe for p, v in gels.items() if p != "probe"} if probe else None
    return record


def step_figures(times: list[float]) -> dict[str, float]:
    """One variant's timed steps (seconds) as its best and median step in milliseconds."""
    return {"best_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times), "steps": len(times)}


def save_json(out: Path, name: str, document: dict[str, Any]) -> Path:
    """`document` as `name` in the folder `out` (made if missing), for the records."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(document, indent=1, default=str))
    return path
