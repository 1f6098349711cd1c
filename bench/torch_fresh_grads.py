"""fastoptim.torch's AdamW beside torch's fused AdamW on a 100-array model, with the gradients
kept from step to step (``zero_grad(set_to_none=False)``, what ``fastoptim bench`` times) and with
new gradient tensors at every step (torch's default ``zero_grad()``), which fastoptim.torch checks
and views anew: in its native call, and (for comparison) on its Python path, which took every
such step until the native call viewed new gradients itself.

    python bench/torch_fresh_grads.py [--rounds 7] [--steps 50] [--arrays 100] [--elements 7000] [--json FILE]

Each round times `steps` steps of every case in turn (alternated); the best round of each case is
reported. Only the steps are timed: each "new gradients" step follows (untimed) the setting of
every parameter's .grad to a new clone, which frees the one before when the step lets go of it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

import fastoptim.torch as fot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arrays", type=int, default=100)
    parser.add_argument("--elements", type=int, default=7000, help="per array")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.arrays < 1 or args.elements < 1:
        parser.error("--arrays and --elements must be at least 1")
    torch.set_num_threads(args.threads)
    arrays, elements = args.arrays, args.elements
    ours, python_ours, theirs = ([torch.zeros(elements, requires_grad=True) for _ in range(arrays)] for _ in range(3))
    opt, python_path, fused = fot.AdamW(ours), fot.AdamW(python_ours), torch.optim.AdamW(theirs, fused=True)
    python_path._binding = None  # never the native call
    grads = [torch.ones(elements) for _ in range(arrays)]
    for p in ours + python_ours + theirs:
        p.grad = torch.ones(elements)

    def nothing() -> None:
        pass

    def new_grads(params: list[torch.Tensor]) -> Callable[[], None]:
        def prepare() -> None:
            for p, g in zip(params, grads):
                p.grad = g.clone()
        return prepare

    # name: (what precedes each step, untimed; the step)
    cases: dict[str, tuple[Callable[[], None], Callable[[], Any]]] = {
        "fastoptim.torch, kept": (nothing, opt.step), "torch fused, kept": (nothing, fused.step),
        "fastoptim.torch, new gradients": (new_grads(ours), opt.step),
        "fastoptim.torch, new gradients, Python path": (new_grads(python_ours), python_path.step),
        "torch fused, new gradients": (new_grads(theirs), fused.step)}
    best = {name: float("inf") for name in cases}
    for _ in range(args.rounds):
        for name, (prepare, step) in cases.items():
            total = 0.0
            for _ in range(args.steps):
                prepare()
                start = time.perf_counter()
                step()
                total += time.perf_counter() - start
            best[name] = min(best[name], total / args.steps)
    figures = {name: t * 1e3 for name, t in best.items()}
    print(f"AdamW, {arrays} float32 arrays of {elements}, {args.threads} threads, best of {args.rounds} rounds "
          f"of {args.steps} steps (ms per step; the gradients' clones are made before each step, untimed)")
    for name, ms in figures.items():
        print(f"  {name:45s} {ms:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arrays": arrays, "elements": elements, "threads": args.threads, "rounds": args.rounds,
                       "steps": args.steps, "ms_per_step": figures}, f, indent=1)


if __name__ == "__main__":
    main()
