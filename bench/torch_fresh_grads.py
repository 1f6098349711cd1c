"""fastoptim.torch's AdamW beside torch's fused AdamW on a 100-array model, with the gradients
kept from step to step (``zero_grad(set_to_none=False)``, what ``fastoptim bench`` times) and with
new gradient tensors at every step (torch's default ``zero_grad()``), which fastoptim.torch checks
and views anew.

    python bench/torch_fresh_grads.py [--rounds 7] [--steps 50] [--json FILE]

Each round times `steps` steps of every case in turn (alternated); the best round of each case is
reported. "new gradients" steps include setting 100 cloned gradients, timed alone as "clones" and
subtracted.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import fastoptim.torch as fot

ARRAYS, ELEMENTS = 100, 7000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = [torch.zeros(ELEMENTS, requires_grad=True) for _ in range(ARRAYS)]
    theirs = [torch.zeros(ELEMENTS, requires_grad=True) for _ in range(ARRAYS)]
    opt, fused = fot.AdamW(ours), torch.optim.AdamW(theirs, fused=True)
    grads = [torch.ones(ELEMENTS) for _ in range(ARRAYS)]
    for p in ours + theirs:
        p.grad = torch.ones(ELEMENTS)

    def new_grads(params: list[torch.Tensor], step: object) -> object:
        def run() -> None:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            step()  # type: ignore[operator]
        return run

    def clones() -> None:
        for g in grads:
            g.clone()

    cases = {"fastoptim.torch, kept": opt.step, "torch fused, kept": fused.step,
             "fastoptim.torch, new gradients": new_grads(ours, opt.step),
             "torch fused, new gradients": new_grads(theirs, fused.step), "clones": clones}
    best = {name: float("inf") for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                run()  # type: ignore[operator]
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    clone = best.pop("clones")
    figures = {name: (t - clone if "new" in name else t) * 1e3 for name, t in best.items()}
    print(f"AdamW, {ARRAYS} float32 arrays of {ELEMENTS}, {args.threads} threads, best of {args.rounds} rounds "
          f"of {args.steps} steps (ms per step; new gradients less the {clone * 1e3:.2f} ms of cloning them)")
    for name, ms in figures.items():
        print(f"  {name:32s} {ms:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arrays": ARRAYS, "elements": ELEMENTS, "threads": args.threads, "rounds": args.rounds,
                       "steps": args.steps, "clones_ms": clone * 1e3, "ms_per_step": figures}, f, indent=1)


if __name__ == "__main__":
    main()
