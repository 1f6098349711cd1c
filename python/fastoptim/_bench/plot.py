"""The plot: Gel/s against elements, log-log, one panel per (rule, dtype), one line per peer.

matplotlib is optional (``fastoptim[plot]``): it is imported only when a plot is drawn, and
:data:`PLOT_HINT` is the note a run leaves when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .peers import PEER_TITLES

_COLORS = {"fastoptim": "tab:red", "fastoptim_torch": "tab:pink", "numpy": "tab:blue",
           "torch_forloop": "tab:olive", "torch_foreach": "tab:orange",
           "torch_fused": "tab:green", "deepspeed": "tab:purple", "probe": "black"}
PLOT_HINT = "no plot: matplotlib is not installed (pip install 'fastoptim[plot]')"


def size_label(elements: float) -> str:
    """An axis tick as a size: 1k, 10k, 1M, 50M, 1G (plain below 1000)."""
    for suffix, unit in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if elements >= unit:
            return f"{elements / unit:g}{suffix}"
    return f"{elements:g}"


def legend_entries(results: list[dict[str, Any]], peers: Sequence[str]) -> list[tuple[str | None, str]]:
    """(peer, label) for each peer that ran, then (None, the model's label) if a model ran: the
    legend lists only what the plot shows."""
    entries: list[tuple[str | None, str]] = [
        (p, PEER_TITLES[p] + (" (limit)" if p == "probe" else "")) for p in peers
        if any(p in r["peers"] for r in results)]
    models = sorted({r["arrays"] for r in results if r["arrays"] > 1})
    if models:
        entries.append((None, ", ".join(f"{n}-array model" for n in models)))
    return entries


def plot(results: list[dict[str, Any]], peers: Sequence[str], path: Path, title: str) -> None:
    """Gel/s against elements, log-log, one panel per (rule, dtype). Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    panels = list(dict.fromkeys((r["rule"], r["dtype"]) for r in results))
    dtypes = list(dict.fromkeys(d for _, d in panels))
    rules = list(dict.fromkeys(rule for rule, _ in panels))
    ncols = len(dtypes)
    nrows = len(rules)
    fig = Figure(figsize=(5.2 * ncols + 1.8, 3.6 * nrows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for (rule, dtype) in panels:
        ax = axes[rules.index(rule)][dtypes.index(dtype)]
        mine = [r for r in results if r["rule"] == rule and r["dtype"] == dtype]
        single = sorted((r for r in mine if r["arrays"] == 1), key=lambda r: r["elements"])
        model = [r for r in mine if r["arrays"] > 1]
        for peer in peers:
            line = [(r["elements"], r["peers"][peer]["gels"]) for r in single if peer in r["peers"]]
            style: dict[str, Any] = {"color": _COLORS[peer]}
            if peer == "probe":
                style.update(linestyle="--", linewidth=1)
            if line:
                xs, ys = zip(*line)
                ax.plot(xs, ys, marker="o", markersize=4, **style)
            for r in model:
                if peer in r["peers"]:
                    ax.plot([r["elements"]], [r["peers"][peer]["gels"]], marker="s", markersize=7,
                            markerfacecolor="none", linestyle="none", color=_COLORS[peer])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: size_label(x)))
        ax.set_yscale("log")
        ax.set_title(f"{rule}, {dtype}")
        ax.set_xlabel("elements per step")
        ax.set_ylabel("Gel/s")
        ax.grid(True, which="both", alpha=0.3)
    handles = []
    for shown, label in legend_entries(results, peers):
        if shown is None:
            handles.append(Line2D([], [], color="gray", marker="s", markerfacecolor="none", linestyle="none",
                                  label=label))
        else:
            handles.append(Line2D([], [], color=_COLORS[shown], marker="o",
                                  linestyle="--" if shown == "probe" else "-", label=label))
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(title)
    fig.savefig(path)
