"""Data-parallel training of a NumPy MLP on several processes with MPI and fastoptim.

    mpiexec -n 2 python examples/train_mpi.py [--zero] [--epochs 5] [--checkpoint ckpt.pkl] [--resume ckpt.pkl]

Every rank builds the same model (``fastoptim.demo.mlp``) and takes its share of each
global batch of the bundled handwritten digits: ``--batch-size`` rows per rank, so the global
batch grows with the ranks. ``opt.step(grads)`` averages the ranks' gradients and steps:

- by default with ``DistributedOptimizer(fo.AdamW(...))``: every rank holds the whole
  optimizer state;
- with ``--zero``, ``ZeroRedundancyOptimizer(params, fo.AdamW, ...)``: each rank keeps 1/N of
  the state and updates 1/N of the weights, then the ranks share them.

Either way every rank ends on the same bits, which the script checks, and rank 0 compares the
weights with a single process trained on the same global batches. ``--checkpoint`` saves the
weights, the consolidated optimizer state and the schedule on rank 0; ``--resume`` loads one,
saved under any number of ranks, and continues.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

import fastoptim as fo
from fastoptim.demo.data import Split, train_test_split
from fastoptim.demo.mlp import MLP
from fastoptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer
from fastoptim.lr_scheduler import WarmupCosineLR


def build(args: argparse.Namespace, split: Split, ranks: int, comm: Any) -> tuple[MLP, Any, Any]:
    model = MLP([64, 128, 10], seed=args.seed)
    if args.zero:  # each rank: 1/N of AdamW's state
        opt: Any = ZeroRedundancyOptimizer(model.params, fo.AdamW, comm, max_grad_norm=1.0, lr=3e-3,
                                           weight_decay=0.05)
    else:          # each rank: the whole state
        opt = DistributedOptimizer(fo.AdamW(model.params, lr=3e-3, weight_decay=0.05), comm, max_grad_norm=1.0)
    steps = len(split.y_train) // (args.batch_size * ranks)
    sched = WarmupCosineLR(opt, warmup_steps=steps, total_steps=args.epochs * steps)
    return model, opt, sched


def global_batches(split: Split, epoch: int, seed: int, size: int) -> list[np.ndarray]:
    """The same shuffled global batches on every rank (only full ones)."""
    order = np.random.default_rng([seed, epoch]).permutation(len(split.y_train))
    return [order[i:i + size] for i in range(0, len(order) - size + 1, size)]


def digest(params: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(params[k].tobytes() for k in sorted(params))).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zero", action="store_true", help="shard the optimizer state (ZeRO stage 1)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs in all, counting resumed ones (default 5)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per rank in each batch (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="save weights and optimizer state here at the end")
    parser.add_argument("--resume", type=Path, help="start from this checkpoint (saved under any number of ranks)")
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, ranks = comm.rank, comm.size
    say = print if rank == 0 else (lambda *a, **k: None)

    split = train_test_split()
    model, opt, sched = build(args, split, ranks, comm)
    say(f"{ranks} ranks x {opt.num_threads} threads, {type(opt).__name__}, global batch {args.batch_size * ranks}")
    first = 0
    if args.resume:
        checkpoint = comm.bcast(pickle.loads(args.resume.read_bytes()) if rank == 0 else None, root=0)
        for name, saved in checkpoint["params"].items():
            np.copyto(model.params[name], saved)  # into the optimizer's arrays: never rebind them
        opt.load_state_dict(checkpoint["optimizer"])  # rank 0's is sent to every rank
        sched.load_state_dict(checkpoint["scheduler"])
        first = checkpoint["epochs_done"]
        say(f"resumed from {args.resume.name}, saved by {checkpoint['ranks']} ranks after {first} epochs")

    # A single process on the same global batches, to compare with (rank 0 only).
    alone = MLP([64, 128, 10], seed=args.seed) if rank == 0 and not args.resume else None
    alone_opt = fo.AdamW(alone.params, lr=3e-3, weight_decay=0.05) if alone else None
    alone_sched = WarmupCosineLR(alone_opt, warmup_steps=sched.warmup_steps, total_steps=sched.total_steps) \
        if alone_opt else None

    mine = slice(rank * args.batch_size, (rank + 1) * args.batch_size)
    for epoch in range(first, args.epochs):
        losses = []
        for batch in global_batches(split, epoch, args.seed, args.batch_size * ranks):
            rows = batch[mine]  # this rank's share of the global batch
            loss, grads = model.loss_and_grads(split.x_train[rows], split.y_train[rows])
            opt.step(grads)     # average across ranks, clip to norm 1, AdamW step
            sched.step()
            losses.append(loss)
            if alone is not None and alone_opt is not None and alone_sched is not None:
                _, full = alone.loss_and_grads(split.x_train[batch], split.y_train[batch])
                norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in full.values()))
                if norm > 1.0:  # the same clipping, on the whole batch's gradient
                    for g in full.values():
                        g *= 1.0 / (norm + 1e-6)
                alone_opt.step(full)
                alone_sched.step()
        loss = comm.allreduce(float(np.mean(losses))) / ranks
        accuracy = float(np.mean(model.predict(split.x_test) == split.y_test))
        say(f"  epoch {epoch + 1:>2}: loss {loss:.4f}  grad norm {opt.grad_norm:.3f}  "
            f"test accuracy {100 * accuracy:.1f}%")

    same = len(set(comm.allgather(digest(model.params)))) == 1
    say(f"all {ranks} ranks hold identical weights: {same}")
    memory = comm.gather(opt.memory(), root=0)
    if memory is not None:  # rank 0
        state = [m["state"] / 2**10 for m in memory]
        say(f"optimizer state per rank: {', '.join(f'{s:.0f}' for s in state)} KiB")
    if alone is not None:
        worst = max(float(np.max(np.abs(model.params[k] - alone.params[k]))) for k in model.params)
        say(f"largest weight difference from one process on the same global batches: {worst:.2g} "
            "(float32 rounding of a sum taken in another order)")
    full_state = opt.consolidated_state_dict()  # collective: every rank calls it
    if args.checkpoint and rank == 0:
        checkpoint = {"params": {k: v.copy() for k, v in model.params.items()}, "optimizer": full_state,
                      "scheduler": sched.state_dict(), "epochs_done": args.epochs, "ranks": ranks}
        args.checkpoint.write_bytes(pickle.dumps(checkpoint))
        say(f"saved {args.checkpoint}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
