"""The run: every (rule, dtype, work) measured in turn, gathered into the JSON document.

:func:`run` sets the threads, finds the peers, measures each workload with a progress line on
stderr, folds repeated skip reasons into notes, and, where ``settings.out`` is set, writes
``bench.json`` and ``bench.png`` there.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

import fastoptim as fo

from .peers import PEER_TITLES, _Env
from .plot import PLOT_HINT, plot
from .report import _threads, machine
from .rules import RULES
from .timing import Settings, measure


class _Status:
    """One progress line on stderr: rewritten in place on a terminal, one line per workload otherwise."""

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.index, self.label, self.width = 0, "", 0

    def begin(self, index: int, label: str) -> None:
        self.index, self.label = index, label
        if self.enabled and not self.tty:
            self.stream.write(f"[{index}/{self.total}] {label}\n")
            self.stream.flush()

    def __call__(self, phase: str) -> None:
        if self.tty:
            text = f"[{self.index}/{self.total}] {self.label}: {phase} ({time.perf_counter() - self.start:.0f} s)"
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
            self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def run(settings: Settings, stream: IO[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the JSON document (and writes it, and the plot, to settings.out)."""
    stream = sys.stderr if stream is None else stream
    notes: list[str] = []
    previous_threads = fo.get_num_threads()
    fo.set_num_threads(settings.threads)
    env = _Env(settings.threads, notes)
    try:
        env.load(settings.peers)
        for peer in settings.peers:
            if peer.startswith("torch") and env.torch_reason:
                env.note(env.torch_reason)
            if peer == "deepspeed" and env.deepspeed_reason:
                env.note(env.deepspeed_reason)
        jobs = [(RULES[r], d, w) for r in settings.rules for d in settings.dtypes for w in settings.works]
        status = _Status(len(jobs), stream, settings.progress)
        results = []
        skips: dict[tuple[str, str], dict[str, list[str]]] = {}
        for index, (rule, dtype, work) in enumerate(jobs, start=1):
            status.begin(index, f"{rule.name} {dtype} {work.label}")
            record = measure(rule, dtype, work, settings, env, status)
            for peer, reason in record["skipped"].items():
                if reason not in (env.torch_reason, env.deepspeed_reason):
                    skips.setdefault((rule.name, reason), {}).setdefault(PEER_TITLES[peer], []).append(dtype)
            fastoptim = record["peers"].get("fastoptim", {})
            if fastoptim.get("steps_alone"):
                env.note(f"{rule.name} {dtype} {work.label}: fastoptim's thread backoff ran {fastoptim['steps_alone']} "
                         f"of its {fastoptim['steps_taken']} steps (timed or not) on one thread")
            if len(record["groups"]) > 1:
                env.note(f"{rule.name} {dtype} {work.label}: not enough memory for every peer at once; "
                         f"alternated in groups {record['groups']}")
            results.append(record)
        status.end()
        for (rule_name, reason), skipped in skips.items():
            dtypes = sorted({d for ds in skipped.values() for d in ds})
            env.note(f"{', '.join(skipped)} skipped for {rule_name} ({', '.join(dtypes)}): {reason}")
        document: dict[str, Any] = {
            "schema": 1,
            "machine": machine(env),
            "settings": {"rules": settings.rules, "sizes": [w.label for w in settings.works],
                         "dtypes": settings.dtypes, "peers": settings.peers, "threads": settings.threads,
                         "repeats": settings.repeats, "min_time": settings.min_time,
                         "max_repeats": settings.max_repeats, "max_time": settings.max_time,
                         "warmup": settings.warmup, "seed": settings.seed},
            "units": {"gels": "1e9 parameter elements per second, from the median step",
                      "ratio_to_torch_fused": "Gel/s over torch fused's Gel/s",
                      "fraction_of_probe": "Gel/s over the probe's Gel/s on the same bytes"},
            "peers": list(settings.peers),
            "notes": notes,
            "results": results,
        }
        written: list[str] = []
        if settings.out is not None:
            settings.out.mkdir(parents=True, exist_ok=True)
            if settings.plot:
                try:
                    plot(results, settings.peers, settings.out / "bench.png",
                         f"one optimizer step, {document['machine']['cpu']}, {_threads(settings.threads)}")
                    written.append(str(settings.out / "bench.png"))
                except ImportError:
                    env.note(PLOT_HINT)
            written.insert(0, str(settings.out / "bench.json"))
            document["files"] = written
            (settings.out / "bench.json").write_text(json.dumps(document, indent=1) + "\n")
        return document
    finally:
        fo.set_num_threads(previous_threads)
        env.restore()
