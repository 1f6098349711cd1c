"""fastoptim in a torch training loop: ``fastoptim.torch.AdamW`` in place of ``torch.optim.AdamW``.

    python examples/torch_cpu.py [--epochs 8]

It trains a small torch MLP on the handwritten digits that ship with fastoptim, with
``fastoptim.torch.AdamW`` driven by torch's ``OneCycleLR``, ``zero_grad`` and ``backward`` as
usual; the step is one native call over the model's tensors, in place. Halfway it saves a
checkpoint with ``torch.save`` (model and optimizer state dicts) and, to show that the checkpoint
is torch's, finishes the run twice: once with fastoptim, once after loading the optimizer's state
into ``torch.optim.AdamW``. The two runs end within float32 rounding of each other.
"""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
import torch

import fastoptim.torch as fot
from fastoptim.demo.data import train_test_split

BATCH_SIZE = 32


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10))


def train_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: object, x: torch.Tensor,
                y: torch.Tensor, epoch: int) -> float:
    """One pass over the training set in a shuffle fixed by the epoch; the mean minibatch loss."""
    order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(y)))
    losses = []
    for first in range(0, len(order), BATCH_SIZE):
        batch = order[first:first + BATCH_SIZE]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        sched.step()  # type: ignore[attr-defined]
        losses.append(loss.item())
    return float(np.mean(losses))


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    split = train_test_split()
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train).long()
    x_test, y_test = torch.from_numpy(split.x_test), torch.from_numpy(split.y_test).long()
    steps = args.epochs * math.ceil(len(y) / BATCH_SIZE)

    model = make_model(seed=0)
    opt = fot.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    half = args.epochs // 2
    for epoch in range(half):
        loss = train_epoch(model, opt, sched, x, y, epoch)
        print(f"epoch {epoch + 1}: loss {loss:.4f}, test accuracy {accuracy(model, x_test, y_test):.3f}")

    checkpoint = io.BytesIO()  # a file in a real run
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, checkpoint)
    print(f"checkpoint after epoch {half}: {checkpoint.tell():,} bytes (torch.save)")

    # The same checkpoint resumed with torch.optim.AdamW, on a copy of the model.
    checkpoint.seek(0)
    saved = torch.load(checkpoint, weights_only=True)
    twin = make_model(seed=1)
    twin.load_state_dict(saved["model"])
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=3e-3, weight_decay=0.05)
    twin_sched = torch.optim.lr_scheduler.OneCycleLR(twin_opt, max_lr=3e-3, total_steps=steps)
    twin_opt.load_state_dict(saved["opt"])  # after the scheduler, whose constructor sets the rates
    twin_sched.load_state_dict(saved["sched"])

    for epoch in range(half, args.epochs):
        loss = train_epoch(model, opt, sched, x, y, epoch)
        train_epoch(twin, twin_opt, twin_sched, x, y, epoch)
        print(f"epoch {epoch + 1}: loss {loss:.4f}, test accuracy {accuracy(model, x_test, y_test):.3f}")
    largest = max((a - b).abs().max().item() for a, b in zip(model.parameters(), twin.parameters()))
    print(f"final test accuracy: {accuracy(model, x_test, y_test):.3f}")
    print(f"torch.optim.AdamW resumed from the checkpoint ends within {largest:.1e} of fastoptim.torch.AdamW")


if __name__ == "__main__":
    main()
