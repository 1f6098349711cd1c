"""Classic 2-D test functions, for drawing the paths optimizers take on their contours.

Each function has a value (vectorised, for the contours) and an analytic gradient; the point
is a 2-element float64 array that a real fastoptim optimizer steps in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "Path2D", "Surface", "descend", "has_rates", "main", "run_all"]


def _rosenbrock(x: Any, y: Any) -> Any:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad(x: Any, y: Any) -> tuple[Any, Any]:
    return -2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)


def _beale(x: Any, y: Any) -> Any:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _beale_grad(x: Any, y: Any) -> tuple[Any, Any]:
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
    return (2 * a * (y - 1) + 2 * b * (y**2 - 1) + 2 * c * (y**3 - 1),
            2 * a * x + 4 * b * x * y + 6 * c * x * y**2)


def _saddle(x: Any, y: Any) -> Any:
    return x**2 + y**4 / 4 - y**2 / 2


def _saddle_grad(x: Any, y: Any) -> tuple[Any, Any]:
    return 2 * x, y**3 - y


@dataclass(frozen=True)
class Surface:
    """A test function: its formula, where paths start, where its minima are, the plotted
    window, log-spaced contours or not, and each optimizer's learning rate on it."""

    name: str
    formula: str
    value: Callable[[Any, Any], Any]
    gradient: Callable[[Any, Any], tuple[Any, Any]]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    log_contours: bool
    lrs: Mapping[str, float] = field(default_factory=dict)

    def distance_to_minimum(self, point: np.ndarray) -> float:
        return float(min(np.hypot(point[0] - mx, point[1] - my) for mx, my in self.minima))


# The rates are tuned by hand for 500 steps. RAdam (and Ranger, which wraps it) takes its first
# steps as plain momentum SGD, until its variance estimate is trusted, so on Rosenbrock's steep
# walls its rate must stay small, and it is still crawling along the valley when the steps end.
# Muon is left out on purpose: it orthogonalizes 2-D weight matrices (its spec's `cannot` says
# so and `fastoptim demo --landscape` skips or refuses it), and a point here is one 2-vector.
# An optimizer without rates here (Schedule-Free AdamW) runs only with a rate given for it.
FUNCTIONS = (
    Surface("Rosenbrock", "(1-x)² + 100(y-x²)²", _rosenbrock, _rosenbrock_grad, start=(-1.0, 0.0),
            minima=((1.0, 1.0),), xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), log_contours=True,
            lrs=dict(sgd=1e-3, adam=0.3, adamw=0.3, radam=2.5e-3, lion=1e-2, ranger=3e-3)),
    Surface("Beale", "(1.5-x+xy)² + (2.25-x+xy²)² + (2.625-x+xy³)²", _beale, _beale_grad, start=(0.5, -1.5),
            minima=((3.0, 0.5),), xlim=(-0.5, 4.0), ylim=(-2.0, 1.5), log_contours=True,
            lrs=dict(sgd=5e-3, adam=0.1, adamw=0.1, radam=0.1, lion=5e-2, ranger=0.15)),
    Surface("saddle", "x² + y⁴/4 - y²/2", _saddle, _saddle_grad, start=(-1.5, 1e-3),
            minima=((0.0, 1.0), (0.0, -1.0)), xlim=(-2.0, 2.0), ylim=(-2.0, 2.0), log_contours=False,
            lrs=dict(sgd=5e-2, adam=2e-2, adamw=2e-2, radam=4e-2, lion=1e-2, ranger=6e-2)),
)


# AdamW keeps a decoupled weight decay here (lr·0.01 of the point each step): it pulls the path
# toward the origin, which is all that tells AdamW from Adam (without it the two paths coincide).
_DECAY_KEPT = {"adamw": 0.01}


def has_rates(key: str) -> bool:
    """Whether the optimizer named `key` (the command line's name) has a rate on every surface."""
    return all(key in surface.lrs for surface in FUNCTIONS)


def descend(surface: Surface, optimizer_factory: Callable[[dict[str, np.ndarray]], Any], steps: int) -> np.ndarray:
    """The path (steps + 1, 2) of an optimizer that `optimizer_factory` builds over
    ``{"xy": point}``, started at ``surface.start``. A path that leaves the finite numbers
    stops there."""
    point = np.array(surface.start, dtype=np.float64)
    optimizer = optimizer_factory({"xy": point})
    path = [point.copy()]
    grad = np.empty(2, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging path just ends
        for _ in range(steps):
            grad[:] = surface.gradient(point[0], point[1])
            if not np.isfinite(grad).all():
                break
            optimizer.step({"xy": grad})
            if not np.isfinite(point).all():
                break
            path.append(point.copy())
    return np.array(path)


# ---- fastoptim demo --landscape ------------------------------------------------------------
FIGSIZE, DPI = (15.0, 5.0), 100  # the PNG is 1500 x 500 pixels
RANGER_CAPTION = ("Ranger (RAdam + Lookahead) ends short on Rosenbrock: RAdam's first steps are momentum SGD (the "
                  "long jumps) until its variance estimate is trusted, so its rate must stay small; after them its "
                  "steps of about lr = 0.003,\nhalved by Lookahead's pull-back every 6 steps, cover under a unit in "
                  "500 steps, and it is still crawling along the valley.")
PLOT_HINT = "no plot: matplotlib is not installed (pip install 'fastoptim[plot]')"


@dataclass
class Path2D:
    surface: Surface
    label: str
    lr: float
    points: np.ndarray  # (steps + 1, 2); shorter when the path diverged


def run_all(chosen: Sequence[tuple[Any, float | None]], lr_choice: Callable[[float], float],
            steps: int) -> list[Path2D]:
    """Every chosen optimizer (an OptimizerSpec and an optional rate of its own) on every
    surface, from the surface's start, at the surface's rate for it (scaled by `lr_choice`).
    Weight decay is switched off (these functions have no weights to shrink) except AdamW's:
    without it AdamW is Adam, and its path would hide Adam's."""
    paths = []
    for surface in FUNCTIONS:
        for spec, own_lr in chosen:
            lr = own_lr if own_lr is not None else lr_choice(surface.lrs[spec.key])
            overrides = {"weight_decay": _DECAY_KEPT.get(spec.key, 0.0)} if "weight_decay" in spec.kwargs else {}

            def build(params: dict[str, np.ndarray], spec: Any = spec, lr: float = lr,
                      overrides: dict[str, float] = overrides) -> Any:
                return spec.build(params, lr, **overrides)

            points = descend(surface, build, steps)
            label = spec.name + (f" (wd {overrides['weight_decay']:g})" if overrides.get("weight_decay") else "")
            paths.append(Path2D(surface, label, lr, points))
    return paths


def format_table(paths: Sequence[Path2D], steps: int) -> str:
    header = ("function", "optimizer", "lr", "end point", "f(end)", "to minimum")
    rows = []
    for p in paths:
        x, y = p.points[-1]
        distance = p.surface.distance_to_minimum(p.points[-1])
        reach = (f"diverged at step {len(p.points)}" if len(p.points) <= steps
                 else "diverged" if distance > 1e3 else f"{distance:.3g}")
        with np.errstate(over="ignore", invalid="ignore"):  # far-flung end points overflow to inf
            value = float(p.surface.value(x, y))
        rows.append((p.surface.name, p.label, f"{p.lr:.3g}", f"({x:.3g}, {y:.3g})", f"{value:.3g}", reach))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(paths: Sequence[Path2D], path: Any, title: str) -> None:
    """Contours with the paths on them, one panel per surface. Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(FUNCTIONS))
    for ax, surface in zip(axes, FUNCTIONS):
        xs = np.linspace(*surface.xlim, 300)
        ys = np.linspace(*surface.ylim, 300)
        gx, gy = np.meshgrid(xs, ys)
        z = surface.value(gx, gy)
        if surface.log_contours:
            low = max(float(z.min()), 1e-3)
            ax.contour(gx, gy, np.maximum(z, low), levels=np.logspace(np.log10(low), np.log10(z.max()), 30),
                       norm=LogNorm(), colors="0.7", linewidths=0.6)
        else:
            ax.contour(gx, gy, z, levels=30, colors="0.7", linewidths=0.6)
        mine = [p for p in paths if p.surface is surface]
        for i, p in enumerate(mine):
            ax.plot(p.points[:, 0], p.points[:, 1], color=f"C{i}", lw=1.6, label=f"{p.label} (lr {p.lr:.3g})")
        ax.plot(*surface.start, "o", color="black", ms=6)
        for mx, my in surface.minima:
            ax.plot(mx, my, "*", color="gold", mec="black", ms=14)
        ax.set(xlim=surface.xlim, ylim=surface.ylim, title=f"{surface.name}: {surface.formula}", xlabel="x",
               ylabel="y")
        ax.legend(fontsize="small", loc="upper left" if surface.name != "Beale" else "lower right")
    fig.suptitle(title)
    if any(p.label.startswith("Ranger") for p in paths):
        fig.supxlabel(RANGER_CAPTION, fontsize="small")
    fig.savefig(path, format="png")


def main(chosen: Sequence[tuple[Any, float | None]], lr_choice: Callable[[float], float], steps: int,
         out: Any) -> int:
    """``fastoptim demo --landscape``: run, print the table, write the plot (or a hint)."""
    import fastoptim

    paths = run_all(chosen, lr_choice, steps)
    print(f"fastoptim {fastoptim.__version__} landscape: {steps} steps of each optimizer (weight decay off but "
          "AdamW's), from the start (o) toward the minima (*)")
    print()
    print(format_table(paths, steps))
    try:
        plot(paths, out, f"fastoptim {fastoptim.__version__}: {steps} steps of each optimizer on classic 2-D "
                         "test functions")
    except ImportError:
        print(PLOT_HINT)
    else:
        print(f"wrote {out}")
    return 0
