"""``fastoptim demo``: train a NumPy MLP on the bundled digits with several optimizers and compare.

Every optimizer starts from the same initial weights and sees the batches in the same order
(both follow ``--seed``), on a fixed train/test split, under a warmup-cosine schedule. The
table reports the final training loss, the test accuracy, the gradients' global norm (the
median over the last epoch, which every step measures in its own read-only pass; ``--clip``
also clips to it), the training time (forward, backward and optimizer step; evaluation
excluded) and the share of it spent in ``opt.step``. ``--ema DECAY`` keeps an EMA of the
weights in every step's sweep and adds the test accuracy of the averaged weights, evaluated
in place with ``opt.swap_ema()``. An optimizer that cannot do what an option asks (Muon: no
EMA, no compressed state, no bfloat16 weights; see ``OptimizerSpec.cannot``) runs without it,
or is skipped or refused, with a note saying why.
``--landscape`` draws the optimizers' paths on 2-D test functions instead.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import fastoptim
from fastoptim._blas import blas_threads
from fastoptim.lr_scheduler import WarmupCosineLR

from . import landscape
from .data import Split, train_test_split
from .landscape import PLOT_HINT
from .mlp import MLP
from .optimizers import OPTIMIZERS, OptimizerSpec

__all__ = ["HIDDEN", "LrChoice", "RunResult", "build_parser", "main", "plot_training", "train"]

HIDDEN = (256, 256)
TEST_FRACTION = 0.2
# what an OptimizerSpec's `cannot` may name, as the command line asks for it
ASKED_AS = {"ema": "--ema", "state_dtype": "--state-dtype", "bfloat16": "--params-dtype bfloat16",
            "landscape": "--landscape"}
FIGSIZE, DPI = (15.0, 4.6), 100  # the PNG is 1500 x 460 pixels


# ---- learning rates from the command line ------------------------------------------------
@dataclass(frozen=True)
class LrChoice:
    """``--lr``: a multiplier of each optimizer's own rate (``x0.5``) or one rate for all (``0.01``)."""

    scale: float = 1.0
    value: float | None = None

    def __call__(self, default: float) -> float:
        return self.value if self.value is not None else default * self.scale

    def __str__(self) -> str:
        return f"{self.value:g} for every optimizer" if self.value is not None else f"x{self.scale:g}"


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{what} must be a positive number, got {text!r}")
    return value


def _ema_decay(text: str) -> float:
    value = _positive_float(text, "--ema")
    if value >= 1:
        raise argparse.ArgumentTypeError(f"--ema must be a decay below 1, such as 0.99, got {text!r}")
    return value


def parse_lr(text: str) -> LrChoice:
    text = text.strip().lower()
    if text.startswith("x") or text.endswith("x"):
        return LrChoice(scale=_positive_float(text.strip("x"), "the multiplier"))
    return LrChoice(value=_positive_float(text, "the learning rate"))


def parse_optimizers(text: str) -> list[tuple[str, float | None]]:
    """``sgd,adam=0.01``: names, each with an optional learning rate of its own."""
    chosen: list[tuple[str, float | None]] = []
    for item in text.split(","):
        name, _, lr = item.strip().partition("=")
        name = name.strip().lower()
        if name not in OPTIMIZERS:
            raise argparse.ArgumentTypeError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")
        if name in (n for n, _ in chosen):
            raise argparse.ArgumentTypeError(f"{name!r} is given twice")
        chosen.append((name, _positive_float(lr, f"the learning rate of {name}") if lr else None))
    return chosen


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def build_parser(prog: str = "fastoptim demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a NumPy MLP on the UCI handwritten digits (bundled, CC BY 4.0) with several "
                    "fastoptim optimizers and compare them; or, with --landscape, draw their paths on "
                    "2-D test functions.",
        epilog="learning rates:\n"
               "  Each optimizer has its own tuned rate (the peak of the warmup-cosine schedule).\n"
               "  --lr x0.5     halves every optimizer's rate (a multiplier: a leading or trailing 'x')\n"
               "  --lr 0.01     uses 0.01 for every optimizer (a plain number replaces the rates)\n"
               "  --optimizers adam=0.01,lion   sets one optimizer's rate; it wins over --lr\n"
               "\nexamples:\n"
               "  fastoptim demo\n"
               "  fastoptim demo --optimizers sgd,adam --epochs 10 --out digits.png\n"
               "  fastoptim demo --landscape --optimizers adam,lion --lr x2")
    names = ",".join(OPTIMIZERS)
    parser.add_argument("--optimizers", type=parse_optimizers, default=None, metavar="LIST",
                        help=f"comma-separated, each NAME or NAME=LR (default: {names}; those this build "
                             "lacks are skipped)")
    parser.add_argument("--epochs", type=_int_at_least(1), default=15, help="epochs of training (default 15)")
    parser.add_argument("--lr", type=parse_lr, default=LrChoice(), metavar="LR",
                        help="x<factor> scales every optimizer's rate; a plain number replaces them (see below)")
    parser.add_argument("--clip", type=lambda t: _positive_float(t, "--clip"), default=None, metavar="NORM",
                        help="clip the gradients' global 2-norm to NORM (every optimizer's max_grad_norm); "
                             "without it the norm is only measured, for the table")
    parser.add_argument("--ema", type=_ema_decay, default=None, metavar="DECAY",
                        help="keep an EMA of the weights with this decay (ema_decay, with ema_warmup) and report "
                             "its test accuracy, evaluated with swap_ema (e.g. 0.99); Muon keeps none and runs "
                             "without it")
    parser.add_argument("--state-dtype", choices=["bfloat16", "int8"], default=None,
                        help="store every optimizer's state as bfloat16 (state_dtype), half its bytes, or as 8-bit "
                             "block-wise codes, a quarter (arrays of at least 4096 elements); Muon keeps float32 state")
    parser.add_argument("--params-dtype", choices=["float32", "bfloat16"], default="float32",
                        help="the weights' dtype: bfloat16 halves their bytes; the optimizers update them in float32 "
                             "and round them back stochastically, and the matmuls cast them to float32 "
                             "(needs ml_dtypes: pip install \"fastoptim[bf16]\"); Muon takes float32 weights only "
                             "and is skipped")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=32, help="minibatch size (default 32)")
    parser.add_argument("--threads", type=_int_at_least(1), default=None,
                        help="threads per optimizer step (default: fastoptim's, see `fastoptim info`)")
    parser.add_argument("--blas-threads", type=_int_at_least(0), default=1,
                        help="threads for NumPy's BLAS while training (default 1: the demo's matrices are small, "
                             "and more BLAS threads collapse beside a busy program; 0 leaves BLAS as it is)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="seeds the initial weights and the shuffling (default 0); the split is fixed")
    parser.add_argument("--out", type=Path, default=None, metavar="PNG",
                        help="where to write the plot (default fastoptim-demo.png, or fastoptim-landscape.png)")
    parser.add_argument("--landscape", action="store_true",
                        help="draw the optimizers' paths on Rosenbrock, Beale and a saddle instead")
    parser.add_argument("--steps", type=_int_at_least(1), default=500,
                        help="with --landscape: steps per path (default 500)")
    return parser


# ---- training ------------------------------------------------------------------------------
class ProgressBar:
    """``label [#####.....] 3/10 epochs  note`` on one line of `stream`, redrawn in place when it
    is a terminal; elsewhere (a log, a pipe) only the finished line is written."""

    def __init__(self, label: str, total: int, stream: TextIO | None, width: int = 24) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.live = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.line = ""

    def update(self, done: int, note: str) -> None:
        filled = self.width * done // self.total
        self.line = (f"{self.label:<20} [{'#' * filled}{'.' * (self.width - filled)}] "
                     f"{done:>{len(str(self.total))}}/{self.total} epochs  {note}")
        if self.live and self.stream is not None:
            self.stream.write("\r" + self.line)
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.line:
            self.stream.write(("\r" if self.live else "") + self.line + "\n")
            self.stream.flush()


def warmup_steps(epochs: int, steps_per_epoch: int) -> int:
    """One epoch of warmup, but no more than a tenth of the run."""
    return min(steps_per_epoch, epochs * steps_per_epoch // 10)


@dataclass
class RunResult:
    """One optimizer's run. Losses and accuracies: before training, then after each epoch."""

    spec: OptimizerSpec
    lr: float
    train_loss: list[float]
    test_accuracy: list[float]
    train_seconds: float  # forward, backward, optimizer step and schedule (evaluation excluded)
    step_seconds: float   # inside opt.step
    steps: int
    grad_norm: float = math.nan  # median over the last epoch, before clipping
    clipped: float = 0.0  # share of the steps whose gradients were clipped
    clip: float | None = None  # the limit, if any
    ema_accuracy: float | None = None  # the test accuracy of the EMA of the weights, with --ema


def params_dtype_of(name: str) -> type:
    """The dtype `--params-dtype` names: float32, or ml_dtypes' bfloat16 (refused clearly without it)."""
    if name == "float32":
        return np.float32
    try:
        import ml_dtypes
    except ImportError:
        raise SystemExit("--params-dtype bfloat16 needs ml_dtypes: pip install \"fastoptim[bf16]\"") from None
    bfloat16: type = ml_dtypes.bfloat16
    return bfloat16


def train(spec: OptimizerSpec, lr: float, split: Split, *, epochs: int, batch_size: int = 32, seed: int = 0,
          hidden: Sequence[int] = HIDDEN, progress: TextIO | None = None, clip: float | None = None,
          ema: float | None = None, state_dtype: str | None = None, params_dtype: str = "float32") -> RunResult:
    """Train a fresh MLP (initial weights from `seed`) with `spec`'s optimizer at peak rate `lr`,
    warming up linearly over the first epoch (a tenth of the steps at most), then decaying to
    zero on a cosine; with `clip`, the gradients' global norm is clipped to it (the optimizer's
    ``max_grad_norm``), else only measured; with `ema`, the optimizer keeps an EMA of the
    weights with that decay (warmed up), whose test accuracy is measured at the end with the
    EMA swapped into the model; `state_dtype` is the optimizer's (``"bfloat16"`` or ``"int8"``: compressed state);
    `params_dtype` ``"bfloat16"`` keeps the weights in bfloat16 (updated with stochastic rounding).
    What `spec` cannot do (its ``cannot``: Muon's EMA, state dtype, bfloat16 weights) is refused
    with a ValueError before anything runs; the command drops it for that optimizer instead."""
    for option, asked in (("ema", ema is not None), ("state_dtype", state_dtype is not None),
                          ("bfloat16", params_dtype == "bfloat16")):
        if asked and option in spec.cannot:
            raise ValueError(f"{spec.key} cannot train with {ASKED_AS[option]}: {spec.cannot[option]}")
    model = MLP([split.x_train.shape[1], *hidden, 10], seed=seed, dtype=params_dtype_of(params_dtype))
    options: dict[str, Any] = {} if ema is None else {"ema_decay": ema, "ema_warmup": True}
    if state_dtype is not None:
        options["state_dtype"] = state_dtype
    n = len(split.y_train)
    steps_per_epoch = math.ceil(n / batch_size)
    warmup = warmup_steps(epochs, steps_per_epoch)
    if spec.schedule_free:
        options["warmup_steps"] = warmup
    opt = spec.build(model.params, lr, max_grad_norm=math.inf if clip is None else clip, **options)
    sched = None if spec.schedule_free else WarmupCosineLR(opt, warmup, total_steps=epochs * steps_per_epoch)

    def evaluate() -> tuple[float, float]:
        if spec.schedule_free:
            opt.eval()  # the parameters hold the average x until train()
        result = (model.loss(split.x_train, split.y_train), float(np.mean(model.predict(split.x_test) == split.y_test)))
        if spec.schedule_free:
            opt.train()
        return result

    loss, accuracy = evaluate()
    losses, accuracies = [loss], [accuracy]
    bar = ProgressBar(spec.label, epochs, progress)
    train_seconds = step_seconds = 0.0
    norms: list[float] = []
    clipped = 0
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        start = time.perf_counter()
        norms.clear()
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            _, grads = model.loss_and_grads(split.x_train[batch], split.y_train[batch])
            before = time.perf_counter()
            info = opt.step(grads)
            step_seconds += time.perf_counter() - before
            if sched is not None:
                sched.step()
            norms.append(info.grad_norm)
            clipped += clip is not None and info.grad_norm > clip
        train_seconds += time.perf_counter() - start
        loss, accuracy = evaluate()
        losses.append(loss)
        accuracies.append(accuracy)
        bar.update(epoch + 1, f"loss {loss:.4f}  test acc {100 * accuracy:5.1f}%  {train_seconds:.1f} s")
    bar.close()
    steps = epochs * steps_per_epoch
    ema_accuracy = None
    if ema is not None:
        with opt.swap_ema():  # the model's own arrays hold the average until the block ends
            ema_accuracy = float(np.mean(model.predict(split.x_test) == split.y_test))
    return RunResult(spec, lr, losses, accuracies, train_seconds, step_seconds, steps,
                     float(np.median(norms)), clipped / steps, clip, ema_accuracy)


def format_table(results: Sequence[RunResult]) -> str:
    clipping = any(r.clip is not None for r in results)
    averaging = any(r.ema_accuracy is not None for r in results)
    header = ("optimizer", "lr", "train loss", "test acc", *(("EMA acc",) if averaging else ()), "grad norm",
              *(("clipped",) if clipping else ()), "time (s)", "in step", "µs/step")
    rows = [(r.spec.label, f"{r.lr:.3g}", f"{r.train_loss[-1]:.3g}", f"{100 * r.test_accuracy[-1]:.1f}%",
             *(("n/a" if r.ema_accuracy is None else f"{100 * r.ema_accuracy:.1f}%",) if averaging else ()),
             f"{r.grad_norm:.3g}", *((f"{100 * r.clipped:.0f}%",) if clipping else ()),
             f"{r.train_seconds:.2f}", f"{100 * r.step_seconds / max(r.train_seconds, 1e-12):.0f}%",
             f"{1e6 * r.step_seconds / r.steps:.0f}") for r in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_training(results: Sequence[RunResult], path: Path, title: str) -> None:
    """Loss curves, test accuracies and the time split, as a PNG. Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax, time_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1.0]})
    colors = [f"C{i}" for i in range(len(results))]
    for r, color in zip(results, colors):
        epochs = np.arange(len(r.train_loss))
        loss_ax.plot(epochs, r.train_loss, color=color, label=r.spec.label)
        acc_ax.plot(epochs, 100 * np.asarray(r.test_accuracy), color=color,
                    label=f"{r.spec.label}: {100 * r.test_accuracy[-1]:.1f}%")
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    loss_ax.legend(fontsize="small")
    low = min(90.0, min(100 * r.test_accuracy[-1] for r in results) - 3.0)  # zoom on the end, clip the start
    acc_ax.set(ylim=(max(0.0, low), 100.2), xlabel="epoch", ylabel="test accuracy (%)",
               title=f"Test accuracy ({TEST_FRACTION:.0%} held out)")
    acc_ax.legend(fontsize="small", loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    labels = [r.spec.label for r in results]
    step = np.array([r.step_seconds for r in results])
    total = np.array([r.train_seconds for r in results])
    y = np.arange(len(results))
    time_ax.barh(y, total - step, color="0.8", label="NumPy forward, backward and the rest")
    time_ax.barh(y, step, left=total - step, color=colors, label="opt.step (fastoptim)")
    for yi, t, s in zip(y, total, step):
        time_ax.text(t, yi, f" {100 * s / max(t, 1e-12):.0f}% in step", va="center", fontsize="small")
    time_ax.set(yticks=y, yticklabels=labels, xlabel="seconds", title="Training time",
                xlim=(0, 1.35 * max(total.max(), 1e-9)))
    time_ax.invert_yaxis()
    time_ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.suptitle(title)
    fig.savefig(path, format="png")


# ---- the command ----------------------------------------------------------------------------
def _cannot_run(spec: OptimizerSpec, own_lr: float | None, args: argparse.Namespace) -> tuple[str, str] | None:
    """(the option, why) when `spec` cannot run at all in what `args` asks, else None. (What it
    can run without, --ema and --state-dtype, `_train_all` drops for it instead.)"""
    if getattr(args, "landscape", False):
        if "landscape" in spec.cannot:  # Muon: its parameters must be matrices, a path's point is a 2-vector
            return ASKED_AS["landscape"], spec.cannot["landscape"]
        lr_choice = getattr(args, "lr", None)
        if own_lr is None and getattr(lr_choice, "value", None) is None and not landscape.has_rates(spec.key):
            return ASKED_AS["landscape"], f"it has no rate of its own on the 2-D surfaces (give one: {spec.key}=LR)"
    elif getattr(args, "params_dtype", "float32") == "bfloat16" and "bfloat16" in spec.cannot:
        return ASKED_AS["bfloat16"], spec.cannot["bfloat16"]
    return None


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace,
            note: TextIO) -> list[tuple[OptimizerSpec, float | None]]:
    if args.optimizers is None:  # the default list: skip what this build lacks or cannot run, with a note
        chosen: list[tuple[OptimizerSpec, float | None]] = []
        for spec in OPTIMIZERS.values():
            if not spec.available:
                note.write(f"note: skipping {spec.key}: this fastoptim has no {spec.class_name} yet\n")
            elif (cannot := _cannot_run(spec, None, args)) is not None:
                note.write(f"note: skipping {spec.key} with {cannot[0]}: {cannot[1]}\n")
            else:
                chosen.append((spec, None))
        return chosen
    for name, lr in args.optimizers:
        if not OPTIMIZERS[name].available:
            parser.error(f"argument --optimizers: {name!r} is not available: this fastoptim has no "
                         f"{OPTIMIZERS[name].class_name}")
        if (cannot := _cannot_run(OPTIMIZERS[name], lr, args)) is not None:
            parser.error(f"argument --optimizers: {name!r} cannot run with {cannot[0]}: {cannot[1]}")
    return [(OPTIMIZERS[name], lr) for name, lr in args.optimizers]


def main(argv: Sequence[str] | None = None, *, prog: str = "fastoptim demo") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    out: Path = args.out or Path("fastoptim-landscape.png" if args.landscape else "fastoptim-demo.png")
    if not out.parent.is_dir():
        parser.error(f"argument --out: the directory {str(out.parent)!r} does not exist")
    chosen = _chosen(parser, args, sys.stderr)
    threads_before = fastoptim.get_num_threads()
    if args.threads is not None:
        fastoptim.set_num_threads(args.threads)
    try:
        with blas_threads(args.blas_threads or None):
            if args.landscape:
                return landscape.main(chosen, args.lr, args.steps, out)
            return _train_all(chosen, args, out)
    finally:
        fastoptim.set_num_threads(threads_before)


def _train_all(chosen: Sequence[tuple[OptimizerSpec, float | None]], args: argparse.Namespace, out: Path) -> int:
    began = time.perf_counter()
    split = train_test_split(TEST_FRACTION)
    sizes = [split.x_train.shape[1], *HIDDEN, 10]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    steps = math.ceil(len(split.y_train) / args.batch_size)
    params_dtype_of(args.params_dtype)  # refused before anything runs when ml_dtypes is missing
    print(f"fastoptim {fastoptim.__version__} demo: MLP {'-'.join(map(str, sizes))} ({n_params:,} {args.params_dtype} "
          f"parameters) on the UCI digits ({len(split.y_train)} train / {len(split.y_test)} test images)")
    print(f"{args.epochs} epochs x {steps} steps of batch {args.batch_size}, warmup-cosine schedule "
          f"({warmup_steps(args.epochs, steps)} warmup steps), lr {args.lr}, seed {args.seed}, "
          f"{fastoptim.get_num_threads()} thread(s), target {fastoptim.get_target()}"
          + ("" if args.clip is None else f", gradients clipped to norm {args.clip:g}")
          + ("" if args.ema is None else f", EMA of the weights (decay {args.ema:g}, warmed up)")
          + ("" if args.state_dtype is None else f", optimizer state in {args.state_dtype}")
          + "; every step measures the gradients' norm (one read-only pass, in its time)", flush=True)
    def option(spec: OptimizerSpec, name: str, value: Any) -> Any:
        """`value`, or None where `spec` cannot do it (MuonWithAdamW: no EMA, no state dtype)."""
        return None if name in spec.cannot else value

    for spec, _ in chosen:
        for name, value in (("ema", args.ema), ("state_dtype", args.state_dtype)):
            if value is not None and name in spec.cannot:
                print(f"note: {spec.key} runs without {ASKED_AS[name]}: {spec.cannot[name]}"
                      + ("; its EMA acc is n/a" if name == "ema" else ""), file=sys.stderr, flush=True)
    results = [train(spec, lr if lr is not None else args.lr(spec.lr), split, epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed, progress=sys.stderr, clip=args.clip,
                     ema=option(spec, "ema", args.ema), state_dtype=option(spec, "state_dtype", args.state_dtype),
                     params_dtype=args.params_dtype)
               for spec, lr in chosen]
    print()
    print(format_table(results))
    title = (f"fastoptim {fastoptim.__version__}: MLP {'-'.join(map(str, sizes))} on the UCI digits, "
             f"{args.epochs} epochs, seed {args.seed}")
    try:
        plot_training(results, out, title)
    except ImportError:
        print(PLOT_HINT)
    else:
        print(f"wrote {out}")
    print(f"total {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
