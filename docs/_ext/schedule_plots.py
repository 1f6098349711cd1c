"""A Sphinx extension that draws every learning-rate scheduler of fastoptim.lr_scheduler at build
time: one PNG per scheduler, and the Markdown that shows each with the code that made it
(``_generated/schedules.md``, included by schedules.md). The figures are drawn by running the
schedulers, so they cannot drift from what the code does."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

# name -> (the code that builds it around `opt`, steps, the metric ReduceLROnPlateau is given)
EXAMPLES: dict[str, tuple[str, int]] = {
    "StepLR": ("StepLR(opt, step_size=30, gamma=0.5)", 100),
    "MultiStepLR": ("MultiStepLR(opt, milestones=[30, 60, 80], gamma=0.5)", 100),
    "ExponentialLR": ("ExponentialLR(opt, gamma=0.97)", 100),
    "LinearLR": ("LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=40)", 100),
    "ConstantLR": ("ConstantLR(opt, factor=0.25, total_iters=40)", 100),
    "PolynomialLR": ("PolynomialLR(opt, total_iters=80, power=2.0)", 100),
    "CosineAnnealingLR": ("CosineAnnealingLR(opt, T_max=100, eta_min=1e-4)", 100),
    "CosineAnnealingWarmRestarts": ("CosineAnnealingWarmRestarts(opt, T_0=20, T_mult=2, eta_min=1e-4)", 140),
    "OneCycleLR": ("OneCycleLR(opt, max_lr=1e-2, total_steps=100)", 100),
    "CyclicLR": ("CyclicLR(opt, base_lr=1e-4, max_lr=1e-2, step_size_up=15, mode='triangular2', "
                 "cycle_momentum=False)", 100),
    "LambdaLR": ("LambdaLR(opt, lr_lambda=lambda step: 1 / (1 + step) ** 0.5)", 100),
    "MultiplicativeLR": ("MultiplicativeLR(opt, lr_lambda=lambda step: 0.98)", 100),
    "SequentialLR": ("SequentialLR(opt, [LinearLR(opt, start_factor=0.1, total_iters=20), "
                     "ExponentialLR(opt, gamma=0.97)], milestones=[20])", 100),
    "ChainedScheduler": ("ChainedScheduler([ConstantLR(opt, factor=0.5, total_iters=30), "
                         "ExponentialLR(opt, gamma=0.98)])", 100),
    "ReduceLROnPlateau": ("ReduceLROnPlateau(opt, factor=0.5, patience=5)", 100),
    "InverseTimeLR": ("InverseTimeLR(opt, decay_rate=0.5, decay_steps=10)", 100),
    "WarmupCosineLR": ("WarmupCosineLR(opt, warmup_steps=10, total_steps=100)", 100),
}


def plateau_metric(step: int) -> float:
    """The loss ReduceLROnPlateau watches in the example: it falls, then stalls at step 40."""
    return 1.0 / (1 + min(step, 40))


def learning_rates(name: str) -> list[float]:
    """The lr of each step of EXAMPLES[name], driving a fastoptim.SGD with lr 1e-2."""
    import fastoptim as fo
    from fastoptim import lr_scheduler

    opt = fo.SGD([np.zeros(1)], lr=1e-2, momentum=0.9)
    code, steps = EXAMPLES[name]
    scheduler = eval(code, {**vars(lr_scheduler), "opt": opt})  # noqa: S307  (our own table)
    rates = []
    for step in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        if name == "ReduceLROnPlateau":
            scheduler.step(plateau_metric(step))
        else:
            scheduler.step()
    return rates


def draw(app: Any) -> None:
    """builder-inited: the PNGs and _generated/schedules.md."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    sections = []
    for name in EXAMPLES:
        fig = Figure(figsize=(6.0, 2.4), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.plot(learning_rates(name), color="tab:red")
        ax.set(xlabel="step", ylabel="lr", title=name)
        ax.grid(True, alpha=0.3)
        fig.savefig(out / f"{name}.png")
        sections.append(textwrap.dedent(f"""\
            ## {name}

            ```python
            sched = fo.lr_scheduler.{EXAMPLES[name][0]}
            ```

            ![{name}: the learning rate at each step](_generated/{name}.png)

            ```{{eval-rst}}
            .. autoclass:: fastoptim.lr_scheduler.{name}
            ```
            """))
    (out / "schedules.md").write_text("\n".join(sections))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", draw)
    return {"parallel_read_safe": True, "version": "1"}
