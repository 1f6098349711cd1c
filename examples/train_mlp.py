"""fastoptim in your own NumPy training loop: an optimizer, a schedule, a checkpoint, a resume.

    python examples/train_mlp.py [--epochs 10] [--checkpoint ckpt.pkl]

It trains a small MLP (plain NumPy forward and backward, ``fastoptim.demo.mlp``) on the
handwritten digits that ship with fastoptim, with AdamW and a warmup-cosine schedule. Halfway
it saves a checkpoint, a pickle of the parameters, ``opt.state_dict()`` and the scheduler's
``state_dict()``. Then it builds everything again from scratch, loads the checkpoint, trains
the second half once more and checks that the resumed run ends on exactly the same weights.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import fastoptim as fo
from fastoptim.demo.data import Split, train_test_split
from fastoptim.demo.mlp import MLP
from fastoptim.lr_scheduler import WarmupCosineLR

BATCH_SIZE = 32


def build(split: Split, epochs: int, seed: int) -> tuple[MLP, Any, Any]:
    """The model, its optimizer and its schedule, as at the start of training."""
    model = MLP([64, 128, 10], seed=seed)
    # The optimizer holds model.params and updates those very arrays in place at each step.
    opt = fo.AdamW(model.params, lr=3e-3, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(split.y_train) / BATCH_SIZE)
    sched = WarmupCosineLR(opt, warmup_steps=steps_per_epoch, total_steps=epochs * steps_per_epoch)
    return model, opt, sched


def train_epoch(model: MLP, opt: Any, sched: Any, split: Split, epoch: int, seed: int) -> float:
    """One pass over the training set; returns the mean minibatch loss."""
    # The shuffle depends only on (seed, epoch), so a resumed run sees the same batches
    # without saving a random generator's state.
    order = np.random.default_rng([seed, epoch]).permutation(len(split.y_train))
    losses = []
    for first in range(0, len(order), BATCH_SIZE):
        batch = order[first:first + BATCH_SIZE]
        loss, grads = model.loss_and_grads(split.x_train[batch], split.y_train[batch])
        opt.step(grads)  # grads: a dict with the parameters' names, shapes and dtype
        sched.step()     # the learning rate for the next step
        losses.append(loss)
    return float(np.mean(losses))


def save_checkpoint(path: Path, model: MLP, opt: Any, sched: Any, epochs_done: int) -> None:
    checkpoint = {
        "params": {name: array.copy() for name, array in model.params.items()},
        "optimizer": opt.state_dict(),  # plain dicts of NumPy arrays and numbers
        "scheduler": sched.state_dict(),
        "epochs_done": epochs_done,
    }
    with open(path, "wb") as f:
        pickle.dump(checkpoint, f)


def load_checkpoint(path: Path, model: MLP, opt: Any, sched: Any) -> int:
    """Restore a checkpoint into freshly built objects; returns the epochs already done."""
    with open(path, "rb") as f:
        checkpoint = pickle.load(f)  # only load checkpoints you wrote: pickle runs code
    for name, saved in checkpoint["params"].items():
        np.copyto(model.params[name], saved)  # into the optimizer's arrays: never rebind them
    opt.load_state_dict(checkpoint["optimizer"])
    sched.load_state_dict(checkpoint["scheduler"])
    return int(checkpoint["epochs_done"])


def accuracy(model: MLP, split: Split) -> float:
    return float(np.mean(model.predict(split.x_test) == split.y_test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs in all (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffling (default 0)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="where to save the checkpoint (default: a temporary file)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("argument --epochs: must be >= 2 (the checkpoint is taken halfway)")
    split = train_test_split()
    halfway = args.epochs // 2

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or Path(tmp) / "checkpoint.pkl"

        print(f"training {args.epochs} epochs, saving a checkpoint after epoch {halfway}")
        model, opt, sched = build(split, args.epochs, args.seed)
        for epoch in range(args.epochs):
            loss = train_epoch(model, opt, sched, split, epoch, args.seed)
            print(f"  epoch {epoch + 1:>2}: loss {loss:.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                  f"test accuracy {100 * accuracy(model, split):.1f}%")
            if epoch + 1 == halfway:
                save_checkpoint(path, model, opt, sched, epoch + 1)

        print(f"resuming from {path.name} in new objects (built with another seed, then overwritten)")
        resumed, opt2, sched2 = build(split, args.epochs, args.seed + 1)
        start = load_checkpoint(path, resumed, opt2, sched2)
        for epoch in range(start, args.epochs):
            train_epoch(resumed, opt2, sched2, split, epoch, args.seed)

    worst = max(float(np.max(np.abs(model.params[k] - resumed.params[k]))) for k in model.params)
    same = all(np.array_equal(model.params[k], resumed.params[k]) for k in model.params)
    print(f"test accuracy: straight run {100 * accuracy(model, split):.1f}%, resumed run "
          f"{100 * accuracy(resumed, split):.1f}%")
    print(f"resumed run matches the straight run: {same} (largest weight difference {worst:g})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
