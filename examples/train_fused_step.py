"""The whole training step in fastoptim's one sweep: accumulation, clipping, skipping a bad
step, a frozen layer and an EMA of the weights for evaluation.

    python examples/train_fused_step.py [--epochs 6] [--micro-batches 4]

It trains a small MLP (plain NumPy forward and backward, ``fastoptim.demo.mlp``) on the
handwritten digits that ship with fastoptim. Its first layer stands for a pretrained one and
stays frozen: its gradients are passed as None, so AdamW leaves it, and its state, alone
(torch's ``.grad = None``). Each optimizer step sums several micro-batches
(``opt.accumulate``), averages them with ``grad_scale``, clips their global norm
(``max_grad_norm``) and skips a step whose gradients hold a NaN (``skip_nonfinite``: one
micro-batch is poisoned on purpose). The optimizer keeps an EMA of the weights, updated in the
step's own sweep, and each epoch evaluates both the weights and, with ``opt.swap_ema()``, their
average.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastoptim as fo
from fastoptim.demo.data import Split, train_test_split
from fastoptim.demo.mlp import MLP
from fastoptim.lr_scheduler import WarmupCosineLR

MICRO_BATCH = 16
FROZEN = ("W0", "b0")  # the "pretrained" first layer


def accuracy(model: MLP, split: Split) -> float:
    return float(np.mean(model.predict(split.x_test) == split.y_test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--micro-batches", type=int, default=4, help="micro-batches summed into each step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    split = train_test_split(0.25)
    model = MLP([64, 128, 64, 10], seed=args.seed)
    frozen_before = {name: model.params[name].copy() for name in FROZEN}
    # One optimizer for everything: the frozen layer simply never gets a gradient.
    opt = fo.AdamW(model.params, lr=3e-3, weight_decay=0.05, max_grad_norm=1.0, skip_nonfinite=True,
                   ema_decay=0.99, ema_warmup=True)
    k = args.micro_batches
    steps_per_epoch = len(split.y_train) // (MICRO_BATCH * k)
    sched = WarmupCosineLR(opt, warmup_steps=steps_per_epoch, total_steps=args.epochs * steps_per_epoch)

    skipped = clipped = 0
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(split.y_train))
        losses = []
        for step in range(steps_per_epoch):
            for m in range(k):
                at = (step * k + m) * MICRO_BATCH
                batch = order[at:at + MICRO_BATCH]
                loss, grads = model.loss_and_grads(split.x_train[batch], split.y_train[batch])
                if epoch == 0 and step == 3 and m == 1:
                    grads["W1"][0, 0] = np.nan  # a bad micro-batch: its step will be skipped
                for name in FROZEN:
                    grads[name] = None  # frozen: no update, no state, no step count
                losses.append(loss)
                if m < k - 1:
                    opt.accumulate(grads, grad_scale=k)  # the mean of the k micro-batches
                else:
                    info = opt.step(grads, grad_scale=k)  # adds the last one in the step's own sweep
            skipped += info.skipped
            clipped += not info.skipped and info.grad_norm is not None and info.grad_norm > 1.0
            if not info.skipped:
                sched.step()
        weights = accuracy(model, split)
        with opt.swap_ema():  # the model's arrays hold the EMA inside the block, in place
            averaged = accuracy(model, split)
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  test acc {100 * weights:.1f}%  "
              f"EMA test acc {100 * averaged:.1f}%")

    unchanged = all(np.array_equal(model.params[n], frozen_before[n]) for n in FROZEN)
    steps = opt.state_dict()["state"]
    print(f"steps skipped: {skipped}; steps clipped: {clipped} of {args.epochs * steps_per_epoch}")
    print(f"frozen layer unchanged: {unchanged}; its step count: {steps['W0']['step']}, "
          f"the others': {steps['W1']['step']}")
    return 0 if unchanged and skipped == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
