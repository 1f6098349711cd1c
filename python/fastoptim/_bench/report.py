"""The report in words: the machine the run was on, and the table of throughputs it prints.

:func:`machine` is the JSON's record of the CPU, memory, library versions, threads and OpenMP
wait; :func:`table` lays out each peer's Gel/s per workload beside fastoptim's ratios to torch
fused and to the probe.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

import fastoptim as fo

from .. import _omp
from .peers import PEER_TITLES, _Env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(env: _Env) -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    affinity = getattr(os, "sched_getaffinity", None)

    def version(name: str) -> str | None:
        if importlib.util.find_spec(name) is None:
            return None
        try:
            from importlib.metadata import version as dist_version

            return dist_version(name)
        except Exception:  # noqa: BLE001
            return "installed"

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else os.cpu_count(),
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None if env.torch is None else str(env.torch.__version__),
        "deepspeed": version("deepspeed"),
        "fastoptim": fo.config(),
        "openmp_wait": _omp.wait_settings(),
        "threads": {"fastoptim": fo.get_num_threads(),
                    "torch": None if env.torch is None else int(env.torch.get_num_threads()),
                    "numpy": 1},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _fmt(x: float | None, kind: str = "gels") -> str:
    if x is None:
        return "—"
    if kind == "ratio":
        return f"{x:.2f}x"
    if kind == "percent":
        return f"{100 * x:.0f}%"
    return f"{x:.3g}"


def table(results: list[dict[str, Any]], peers: Sequence[str]) -> str:
    """rule, dtype, work, each peer's Gel/s, then fastoptim's (and fastoptim.torch's, where it ran)
    ratio to torch fused and share of the probe."""
    shown = [p for p in peers if any(p in r["peers"] for r in results)]
    ours = [p for p in ("fastoptim", "fastoptim_torch") if p in shown] or ["fastoptim"]
    short = {"fastoptim": "fo", "fastoptim_torch": "fo.torch"}
    head = ["rule", "dtype", "work"] + [PEER_TITLES[p] for p in shown]
    head += [f"{short[p]}/{kind}" for p in ours for kind in ("fused", "probe")]
    rows = [head]
    for r in results:
        fused = r["peers"].get("torch_fused", {}).get("gels")
        probe = r["peers"].get("probe", {}).get("gels")
        row = [r["rule"], r["dtype"], r["work"]] + [_fmt(r["peers"].get(p, {}).get("gels")) for p in shown]
        for peer in ours:
            gels = r["peers"].get(peer, {}).get("gels")
            row += [_fmt(gels / fused if gels and fused else None, "ratio"),
                    _fmt(gels / probe if gels and probe else None, "percent")]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
