"""The command line: ``fastoptim bench`` and ``bench/bench.py`` parse here, run, and print the table.

:func:`main` turns the options into :class:`Settings`, runs the benchmark again in a fresh
process when ``--omp-spin`` asks for an OpenMP wait this process did not start with (GNU
OpenMP reads it once, at load), and prints the table, the machine and the notes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastoptim as fo

from .. import _omp
from .params_dtype import main_params_dtype
from .peers import DEFAULT_PEERS, PEERS
from .pipeline import main_pipeline
from .report import _threads, table
from .rules import RULES
from .runner import run
from .state_dtype import main_state_dtype
from .timing import Settings
from .workloads import DEFAULT_SIZES, Work, parse_work


def _csv(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["all"]:
            return list(choices)
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) if bad else repr(text)}; choose from "
                                             f"{', '.join(choices)} or all")
        return list(dict.fromkeys(items))
    return parse


def _peers(text: str) -> list[str]:
    """--peers: like any list, with ``torch`` standing for its three variants."""
    torch = [p for p in PEERS if p.startswith("torch_")]
    return _csv(PEERS, "peer")(",".join(",".join(torch) if t.strip() == "torch" else t for t in text.split(",")))


def _sizes(text: str) -> list[Work]:
    works = [parse_work(t) for t in text.split(",") if t.strip()]
    if not works:
        raise argparse.ArgumentTypeError("--sizes needs at least one size")
    return list({w.label: w for w in works}.values())


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


PIPELINE_SIZES = "1e6,1e7,model"
STATE_SIZES = "1e6,1e7,5e7"
PARAMS_SIZES = "1e7,5e7"

# GOMP_SPINCOUNT for each --omp-spin choice.
SPINS = {"openmp": _omp.OPENMP_DEFAULT_SPIN, "short": _omp.SHORT_SPIN}


def parser(prog: str = "fastoptim bench", full: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="One optimizer step, fastoptim beside NumPy, torch.optim (for-loop, foreach, fused) and "
                    "DeepSpeedCPUAdam, alternated in one run, against the bandwidth probe's limit. "
                    + ("The full grid: every rule, float32 and float64." if full else
                       "Quick by default: Adam in float32 over every size."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rules", type=_csv(list(RULES), "rule"), default=",".join(RULES) if full else "adam",
                   help="comma-separated rules, or all")
    p.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES,
                   help="comma-separated element counts of one array (1e6), one matrix's rows x columns "
                        "(7000x7000), or 'model' (100 arrays, 0.7M elements)")
    p.add_argument("--dtypes", type=_csv(["float32", "float64"], "dtype"),
                   default="float32,float64" if full else "float32", help="float32, float64 or both")
    p.add_argument("--peers", type=_peers, default=",".join(DEFAULT_PEERS),
                   help="which peers to run (torch: torch_forloop, torch_foreach and torch_fused; "
                        "fastoptim_torch, fastoptim.torch on the torch peers' tensors, only when named)")
    p.add_argument("--threads", type=_positive(int), default=fo.get_num_threads(),
                   help="threads for fastoptim, the probe and torch (fo.set_num_threads, torch.set_num_threads); "
                        "the default is fastoptim's (OMP_NUM_THREADS, else every core)")
    p.add_argument("--repeats", type=_positive(int), default=5, help="at least this many timed steps per peer")
    p.add_argument("--min-time", type=_positive(float), default=0.2,
                   help="seconds of timed steps the fastest peer must reach (repeats adapt to the size)")
    p.add_argument("--max-repeats", type=_positive(int), default=500, help="at most this many timed steps per peer")
    p.add_argument("--max-time", type=_positive(float), default=8.0,
                   help="seconds one workload's timed rounds may take, all peers together (--repeats wins)")
    p.add_argument("--warmup", type=_positive(int), default=3, help="untimed steps per peer before timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting values and gradients")
    p.add_argument("--out", type=Path, default=Path("bench/results" if full else "fastoptim-bench"),
                   help="folder for bench.json and bench.png")
    p.add_argument("--quick", action="store_true",
                   help="Adam in float32 over every size (the default of `fastoptim bench`); overrides --rules "
                        "and --dtypes")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--cold-cache", action="store_true",
                   help="time each peer's step right after the other peers' (they evict each other's arrays); "
                        "by default each timed step follows an untimed one of the same peer, as in training")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--pipeline", action="store_true",
                   help="the gradient side of the step instead: float32 AdamW plain, with max_grad_norm, with "
                        "max_grad_norm + grad_scale + skip_nonfinite, and NumPy clipping around the plain step, "
                        "alternated (sizes default to 1e6,1e7,model)")
    p.add_argument("--state-dtype", choices=["bfloat16", "int8"], default=None,
                   help="compressed state instead: float32 AdamW with float32 state, bfloat16 state (nearest and "
                        "stochastic) or 8-bit state (and bitsandbytes' Adam8bit where installed) and the probes of "
                        "both layouts' bytes, alternated (sizes default to 1e6,1e7,5e7)")
    p.add_argument("--params-dtype", choices=["bfloat16"], default=None,
                   help="bfloat16 weights instead: AdamW on float32 weights, on bfloat16 weights with bfloat16 "
                        "state (stochastic and nearest rounding) and with float32 state, torch's fused AdamW on "
                        "bfloat16 tensors and the probes of both layouts' bytes, alternated (sizes default to "
                        "1e7,5e7; needs ml_dtypes)")
    p.add_argument("--omp-spin", choices=list(SPINS), default="openmp",
                   help="GNU OpenMP's busy-wait after a parallel region, one for every peer (the process has one "
                        "OpenMP): 'openmp', its own default (GOMP_SPINCOUNT="
                        f"{_omp.OPENMP_DEFAULT_SPIN}); 'short', the spin docs/arrays.md suggests where BLAS runs "
                        f"between steps (GOMP_SPINCOUNT={_omp.SHORT_SPIN}). Wait variables set in the environment "
                        "are kept")
    return p


def _rerun_with_spin(choice: str, argv: Sequence[str], full: bool, prog: str) -> int | None:
    """GNU OpenMP read its wait settings when `import fastoptim` loaded it: for another spin the
    benchmark runs again in a process that starts with it. None when this process has it, or
    when the user set the wait variables (kept, and noted in the results)."""
    wanted = SPINS[choice]
    if wanted == _omp.OPENMP_DEFAULT_SPIN or any(name in os.environ for name in _omp.VARIABLES):
        return None
    code = (f"import sys; from fastoptim import _omp; _omp.chosen_by = 'fastoptim bench --omp-spin {choice}'; "
            f"from fastoptim._bench import main; sys.exit(main(sys.argv[1:], full={full!r}, prog={prog!r}))")
    return subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, "GOMP_SPINCOUNT": wanted},
                          check=False).returncode


def _spin_line(choice: str) -> str:
    wait = _omp.wait_settings()
    shown = _omp.wait_text() or "its defaults"
    line = f"OpenMP wait for every peer: {shown}"
    if wait["set_by"] == "environment" and wait["GOMP_SPINCOUNT"] != SPINS[choice]:
        line += f" (set in the environment; --omp-spin {choice} not applied)"
    return line


def main(argv: Sequence[str] | None = None, *, full: bool = False, prog: str = "fastoptim bench") -> int:
    """``fastoptim bench [options]``; `full` makes the defaults the full grid (bench/bench.py)."""
    try:
        args = parser(prog, full).parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # --help, or a bad option (argparse has printed why)
        return stop.code if isinstance(stop.code, int) else 2
    if args.quick:
        args.rules, args.dtypes = ["adam"], ["float32"]
    if args.params_dtype is not None and (args.state_dtype is not None or args.pipeline):
        print(f"{prog}: --params-dtype runs alone (not with --state-dtype or --pipeline)", file=sys.stderr)
        return 2
    if args.pipeline:
        given = list(sys.argv[1:] if argv is None else argv)
        works = args.sizes if any(a == "--sizes" or a.startswith("--sizes=") for a in given) else _sizes(PIPELINE_SIZES)
        fo.set_num_threads(args.threads)
        return main_pipeline(works, args.out, repeats=args.repeats,
                             min_time=args.min_time, max_repeats=args.max_repeats, max_time=args.max_time,
                             warmup=args.warmup, seed=args.seed)
    if args.state_dtype is not None:
        given = list(sys.argv[1:] if argv is None else argv)
        works = args.sizes if any(a == "--sizes" or a.startswith("--sizes=") for a in given) else _sizes(STATE_SIZES)
        fo.set_num_threads(args.threads)
        return main_state_dtype(works, args.state_dtype, args.out, repeats=args.repeats, min_time=args.min_time,
                                max_repeats=args.max_repeats, max_time=args.max_time, warmup=args.warmup,
                                seed=args.seed)
    if args.params_dtype is not None:
        given = list(sys.argv[1:] if argv is None else argv)
        works = args.sizes if any(a == "--sizes" or a.startswith("--sizes=") for a in given) else _sizes(PARAMS_SIZES)
        fo.set_num_threads(args.threads)
        return main_params_dtype(works, args.out, repeats=args.repeats, min_time=args.min_time,
                                 max_repeats=args.max_repeats, max_time=args.max_time, warmup=args.warmup,
                                 seed=args.seed)
    rerun = _rerun_with_spin(args.omp_spin, list(sys.argv[1:] if argv is None else argv), full, prog)
    if rerun is not None:
        return rerun
    settings = Settings(rules=args.rules, works=args.sizes, dtypes=args.dtypes, peers=args.peers,
                        threads=args.threads, repeats=args.repeats, min_time=args.min_time,
                        max_repeats=args.max_repeats, max_time=args.max_time, warmup=args.warmup, seed=args.seed,
                        out=args.out, plot=not args.no_plot, progress=not args.quiet,
                        warm_cache=not args.cold_cache)
    document = run(settings)
    print(table(document["results"], settings.peers))
    print()
    print("Gel/s = 1e9 parameter elements per second (median step, after warm-up); fo/fused = fastoptim over "
          "torch fused; fo/probe = fastoptim's share of the probe's limit on the same bytes.")
    m = document["machine"]
    print(f"{m['cpu']}, {_threads(settings.threads)} (fastoptim {m['fastoptim']['version']}, "
          f"{m['fastoptim']['target']}; torch {m['torch'] or '—'}; NumPy {m['numpy']}, one thread)")
    print(_spin_line(args.omp_spin))
    for note in document["notes"]:
        print(f"note: {note}")
    if document.get("files"):
        print("wrote " + ", ".join(document["files"]))
    return 0
