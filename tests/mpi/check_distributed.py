"""Every check of fastoptim.distributed that needs several processes. Run it under MPI:

    mpiexec -n 3 python tests/mpi/check_distributed.py [--size 3] [-k NAME] [--save DIR | --load DIR]

It exits 0 when every check passes. A failing check prints its traceback and aborts every
rank (MPI_Abort), so that no rank is left waiting in a collective; the exit status is then
non-zero. ``--save DIR`` / ``--load DIR`` run only the checkpoint written by one world size
and read by another (tests/test_distributed.py runs them as two mpiexec calls).

The reference for every comparison is the plain, single-process optimizer fed the average
that the distributed ones compute: ``(((g_0 + g_1) + g_2) + ...) / N`` in rank order.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # registry.py, reference.py

from mpi4py import MPI  # noqa: E402

import fastoptim as fo  # noqa: E402
from fastoptim.demo.mlp import MLP  # noqa: E402
from fastoptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer, default_num_threads  # noqa: E402
from fastoptim.distributed._common import share_of_cores  # noqa: E402
from fastoptim.schedule_free import ScheduleFree  # noqa: E402
from registry import CASES  # noqa: E402

CHECKS: list[Callable[[Any], None]] = []
TINY = 0.002  # MiB: 512 float32 elements a bucket, so that small tests cross many buckets
# C and F order, 0-d and empty, arrays that span several buckets and arrays that share one
SHAPES: list[tuple[tuple[int, ...], str]] = [((33, 31), "C"), ((31, 17), "F"), ((1025,), "C"), ((7,), "C"),
                                             ((), "C"), ((0,), "C"), ((3000,), "C"), ((5, 3), "C")]


def check(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    CHECKS.append(fn)
    return fn


# ---- problems -------------------------------------------------------------------------------
def make_params(dtype: Any, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(f"p{i}", np.asarray(rng.standard_normal(s), dtype=dtype, order=o)) for i, (s, o) in enumerate(SHAPES)]


def groups_of(named: list[tuple[str, np.ndarray]], lr: float) -> list[dict[str, Any]]:
    """Two groups, the second with half the learning rate."""
    return [{"params": named[:5]}, {"params": named[5:], "lr": lr / 2}]


def rank_grads(dtype: Any, step: int, rank: int, like: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([step, rank, 99])
    return {n: np.asarray(rng.standard_normal(a.shape), dtype=dtype, order="F" if a.flags.f_contiguous and not
                          a.flags.c_contiguous else "C") for n, a in like}


def average(per_rank: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The rank-order average, as fastoptim.distributed computes it."""
    out = {}
    for name, first in per_rank[0].items():
        total = first.copy(order="K")
        for grads in per_rank[1:]:
            np.add(total, grads[name], out=total)
        np.divide(total, len(per_rank), out=total)
        out[name] = total
    return out


def copies(named: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    return [(n, a.copy(order="K")) for n, a in named]


# ---- comparisons ----------------------------------------------------------------------------
def same(x: Any, y: Any, path: str = "") -> None:
    """x and y hold the same structure and the same bits."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and list(x) == list(y), f"{path}: keys {list(x)} != {list(y)}"
        for k in x:
            same(x[k], y[k], f"{path}[{k!r}]")
    elif isinstance(x, (list, tuple)):
        assert isinstance(y, (list, tuple)) and len(x) == len(y), f"{path}: {x!r} != {y!r}"
        for i, (a, b) in enumerate(zip(x, y)):
            same(a, b, f"{path}[{i}]")
    elif isinstance(x, np.ndarray):
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, f"{path}: {x!r} vs {y!r}"
        assert x.tobytes(order="A") == y.tobytes(order="A"), \
            f"{path}: differs, largest difference {np.max(np.abs(x.astype(float) - y.astype(float)), initial=0)}"
    else:
        assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), f"{path}: {x!r} != {y!r}"


def scaled(array: np.ndarray, factor: float) -> np.ndarray:
    """array * factor, computed in float64 and rounded once to the array's dtype."""
    wide = array.astype(np.float64, order="K")
    np.multiply(wide, factor, out=wide)
    return wide.astype(array.dtype, order="K")


def digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def same_on_every_rank(comm: Any, arrays: list[np.ndarray], what: str) -> None:
    digests = comm.allgather(digest(arrays))
    assert len(set(digests)) == 1, f"{what}: the ranks hold different bits ({digests})"


def raises_everywhere(comm: Any, kind: type[Exception], words: str, fn: Callable[..., Any], *args: Any) -> str:
    """fn(*args) raises `kind` on every rank, with `words` in the message."""
    try:
        fn(*args)
    except kind as error:
        message = str(error)
    else:
        raise AssertionError(f"no {kind.__name__} on rank {comm.rank}")
    assert words in message, f"{words!r} not in {message!r}"
    comm.Barrier()  # and nobody is left behind in a collective
    return message


def opt_arrays(opt: Any) -> list[np.ndarray]:
    return [p for g in opt.param_groups for p in g["params"]]


# ---- the checks -----------------------------------------------------------------------------
def _bits_case(comm: Any, case: Any, kwargs: dict[str, Any], dtype: Any, steps: int = 4) -> None:
    n, rank = comm.size, comm.rank
    lr = float(kwargs.get("lr", case.cls([np.zeros(1, np.float32)], **kwargs).param_groups[0]["lr"]))
    start = make_params(dtype, seed=rank)  # different on every rank: rank 0's are broadcast
    ddp_params, zero_params = copies(start), copies(start)
    ref_params = copies(make_params(dtype, seed=0))
    ddp = DistributedOptimizer(case.cls(groups_of(ddp_params, lr), **kwargs), comm, bucket_cap_mb=TINY)
    # ZeRO refuses Schedule-Free (schedule_free_is_refused_by_zero_and_switched_by_ddp)
    sharded = not issubclass(type(ddp.optimizer), ScheduleFree)
    zero = ZeroRedundancyOptimizer(groups_of(zero_params, lr), case.cls, comm, bucket_cap_mb=TINY, **kwargs) \
        if sharded else None
    ref = case.cls(groups_of(ref_params, lr), **kwargs)
    for step in range(steps):
        per_rank = [rank_grads(dtype, step, r, ref_params) for r in range(n)]
        mine = per_rank[rank]
        avg = average(per_rank)
        kept = {k: v.copy(order="K") for k, v in mine.items()}
        if zero is not None:
            zero.step(mine)
            same(mine, kept, "ZeroRedundancyOptimizer left the gradients as they were")
        ddp.step(mine)
        ref.step(avg)
        same(mine, avg, f"{case.name}: DistributedOptimizer wrote the average into the gradients")
    label = f"{case.name} {kwargs} {np.dtype(dtype).name}"
    for (name, a), (_, b), (_, c) in zip(ddp_params, zero_params, ref_params):
        same(a, c, f"{label}: DistributedOptimizer params[{name!r}]")
        if zero is not None:
            same(b, c, f"{label}: ZeroRedundancyOptimizer params[{name!r}]")
    same(ddp.state_dict(), ref.state_dict(), f"{label}: DistributedOptimizer state")
    if zero is not None:
        full = zero.consolidated_state_dict(to=n - 1)
        if rank == n - 1:
            same(full, ref.state_dict(), f"{label}: consolidated ZeroRedundancyOptimizer state")
        else:
            assert full is None
    same_on_every_rank(comm, [a for _, a in ddp_params] + ([b for _, b in zero_params] if zero else []), label)


@check
def ranks_that_differ_in_cautious_are_refused(comm: Any) -> None:
    """cautious=True picks another native rule: DistributedOptimizer compares it across ranks."""
    params = {"w": np.ones(8, np.float32)}
    raises_everywhere(comm, ValueError, "native rule", DistributedOptimizer,
                      fo.AdamW(params, cautious=comm.rank == 0), comm)


@check
def schedule_free_is_refused_by_zero_and_switched_by_ddp(comm: Any) -> None:
    """ZeRO shards z, which train() and eval() move every parameter toward: it refuses
    Schedule-Free alike on every rank. DistributedOptimizer's train() and eval() switch every
    rank's parameters alike, and a step in eval mode raises on every rank before any message."""
    params = {"w": np.ones(8, np.float32)}
    raises_everywhere(comm, TypeError, "DistributedOptimizer, whose train", ZeroRedundancyOptimizer, params,
                      fo.ScheduleFreeAdamW, comm)
    raises_everywhere(comm, TypeError, "DistributedOptimizer, whose train", ZeroRedundancyOptimizer, params,
                      functools.partial(fo.ScheduleFreeSGD, momentum=0.5), comm)  # any callable building one
    mine = {"w": np.linspace(-1, 1, 8, dtype=np.float32)}
    ddp = DistributedOptimizer(fo.ScheduleFreeAdamW(mine, lr=0.1), comm)
    ref = fo.ScheduleFreeAdamW({"w": mine["w"].copy()}, lr=0.1)
    grads = {"w": np.full(8, 0.5, np.float32)}
    ddp.step({"w": grads["w"].copy()})
    ref.step(grads)
    ddp.eval()
    ref.eval()
    same(mine["w"], ref.param_groups[0]["params"][0], "DistributedOptimizer.eval()")
    raises_everywhere(comm, RuntimeError, "eval mode", ddp.step, {"w": grads["w"].copy()})
    ddp.train()
    ref.train()
    same(mine["w"], ref.param_groups[0]["params"][0], "DistributedOptimizer.train()")
    same_on_every_rank(comm, [mine["w"]], "schedule-free switch")


@check
def every_rule_gives_the_plain_optimizers_bits(comm: Any) -> None:
    """DistributedOptimizer and ZeroRedundancyOptimizer (split by elements, or by whole arrays
    for LAMB and LARS) end on the plain optimizer's bits, state included, on every rank, for
    every rule of the registry and both dtypes."""
    for case in CASES:
        for kwargs in case.arg_sets[:2]:
            for dtype in (np.float32, np.float64):
                _bits_case(comm, case, kwargs, dtype)


@check
def bfloat16_parameters_are_refused_on_every_rank(comm: Any) -> None:
    """MPI has no bfloat16 reduction: both wrappers refuse bfloat16 parameters alike on every
    rank, naming the parameter, before any collective call."""
    try:
        import ml_dtypes
    except ImportError:
        return
    params = {"w": np.ones(8, np.float32), "h": np.ones(8, ml_dtypes.bfloat16)}
    raises_everywhere(comm, TypeError, "params['h'] is bfloat16", DistributedOptimizer, fo.Adam(params), comm)
    raises_everywhere(comm, TypeError, "params['h'] is bfloat16", ZeroRedundancyOptimizer, params, fo.Adam, comm)


@check
def compressed_state_gives_the_plain_optimizers_bits(comm: Any) -> None:
    """bfloat16 state, rounded to nearest or stochastically, and 8-bit state: the distributed
    optimizers end on the plain optimizer's bits too (ZeRO's pieces draw by their whole
    parameter's counters, and cut 8-bit state on its blocks)."""
    for case in CASES:
        if case.name not in ("sgd", "adamw", "lamb", "lion", "ranger"):
            continue
        for layout in (dict(state_dtype="bfloat16"), dict(state_dtype="bfloat16", state_rounding="stochastic", seed=9),
                       dict(state_dtype="int8", min_8bit_size=64)):
            _bits_case(comm, case, {**case.arg_sets[1 if len(case.arg_sets) > 1 else 0], **layout}, np.float32)


@check
def zero_shards_the_state(comm: Any) -> None:
    """Each rank's ZeRO state is 1/N of the plain optimizer's (to one 16-element alignment per
    bucket and rank); with whole arrays (LAMB), to the largest array."""
    n = comm.size
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in [(512, 256), (256,), (256, 64), (64,), (10000,)]]
    total = sum(p.nbytes for p in params) * 2  # Adam's exp_avg and exp_avg_sq
    zero = ZeroRedundancyOptimizer([p.copy() for p in params], fo.Adam, comm, bucket_cap_mb=0.25, lr=1e-3)
    state = zero.memory()["state"]
    buckets = len(zero.layout.buckets)
    slack = 2 * buckets * 16 * 4
    assert abs(state - total / n) <= slack, (state, total / n, slack)
    sizes = comm.allgather(state)
    assert sum(sizes) == total, (sizes, total)
    lamb = ZeroRedundancyOptimizer([p.copy() for p in params], fo.LAMB, comm, bucket_cap_mb=0.25, lr=1e-3)
    sizes = comm.allgather(lamb.memory()["state"])
    assert sum(sizes) == total and max(sizes) <= total / n + 2 * max(p.nbytes for p in params), sizes
    ddp = DistributedOptimizer(fo.Adam([p.copy() for p in params], lr=1e-3), comm)
    assert ddp.memory()["state"] == total


@check
def the_average_is_the_gradient_of_the_concatenated_batch(comm: Any) -> None:
    """An MLP in float64: each rank's loss on its slice of the batch; the distributed runs
    follow the single-process run on the whole batch to float64 rounding."""
    n, rank = comm.size, comm.rank
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16 * n, 20))
    y = rng.integers(0, 4, 16 * n)
    models = {kind: MLP([20, 32, 4], seed=1, dtype=np.float64) for kind in ("single", "ddp", "zero")}
    single = fo.Adam(models["single"].params, lr=1e-2)
    ddp = DistributedOptimizer(fo.Adam(models["ddp"].params, lr=1e-2), comm)
    zero = ZeroRedundancyOptimizer(models["zero"].params, fo.Adam, comm, lr=1e-2)
    mine = slice(16 * rank, 16 * (rank + 1))
    for _ in range(20):
        single.step(models["single"].loss_and_grads(x, y)[1])
        ddp.step(models["ddp"].loss_and_grads(x[mine], y[mine])[1])
        zero.step(models["zero"].loss_and_grads(x[mine], y[mine])[1])
    for name, expected in models["single"].params.items():
        for kind in ("ddp", "zero"):
            np.testing.assert_allclose(models[kind].params[name], expected, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{kind} params[{name!r}]")
    same_on_every_rank(comm, list(models["ddp"].params.values()) + list(models["zero"].params.values()), "MLP")


@check
def global_norm_clipping(comm: Any) -> None:
    """Both classes clip the averaged gradient to the same global norm, with the same bits on
    every rank; the norm and the parameters match a float64 clipping to rounding."""
    n, rank = comm.size, comm.rank
    # float32 norms are summed in float32 lanes within blocks of 4096 (the optimizers' own pass)
    for dtype, rtol, norm_rtol in ((np.float32, 2e-6, 1e-5), (np.float64, 1e-13, 1e-12)):
        named = make_params(dtype)
        ddp_params, zero_params, ref_params, inf_params = copies(named), copies(named), copies(named), copies(named)
        ddp = DistributedOptimizer(fo.SGD(ddp_params, lr=0.1, momentum=0.9), comm, max_grad_norm=1.0,
                                   bucket_cap_mb=TINY)
        zero = ZeroRedundancyOptimizer(zero_params, fo.SGD, comm, max_grad_norm=1.0, bucket_cap_mb=TINY, lr=0.1,
                                       momentum=0.9)
        measure = ZeroRedundancyOptimizer(inf_params, fo.SGD, comm, max_grad_norm=math.inf, bucket_cap_mb=TINY,
                                          lr=0.1, momentum=0.9)
        ref = fo.SGD(ref_params, lr=0.1, momentum=0.9)
        unclipped = fo.SGD(copies(named), lr=0.1, momentum=0.9)
        for step in range(3):
            per_rank = [rank_grads(dtype, step, r, named) for r in range(n)]
            avg = average(per_rank)
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in avg.values()))
            measure.step(per_rank[rank])
            unclipped.step({k: v.copy(order="K") for k, v in avg.items()})
            ddp.step({k: v.copy(order="K") for k, v in per_rank[rank].items()})
            zero.step(per_rank[rank])
            factor = 1.0 / (norm + 1e-6)
            ref.step({k: scaled(v, factor) for k, v in avg.items()})
            for opt in (ddp, zero, measure):
                assert opt.grad_norm is not None and math.isclose(opt.grad_norm, norm, rel_tol=norm_rtol), \
                    (opt.grad_norm, norm)
            assert comm.allgather(ddp.grad_norm) == [ddp.grad_norm] * n
            assert ddp.grad_norm == zero.grad_norm
        for (name, a), (_, b), (_, c), (_, d), e in zip(ddp_params, zero_params, ref_params, inf_params,
                                                        opt_arrays(unclipped)):
            same(a, b, f"clipped params[{name!r}]: DistributedOptimizer vs ZeroRedundancyOptimizer")
            np.testing.assert_allclose(a, c, rtol=rtol, atol=rtol, err_msg=f"clipped params[{name!r}]")
            same(d, e, f"max_grad_norm=inf params[{name!r}]")
        same_on_every_rank(comm, [a for _, a in ddp_params], "clipped params")
    ddp.max_grad_norm = None
    ddp.step(rank_grads(np.float64, 9, rank, named))


@check
def skips_and_loss_scales_agree_across_ranks(comm: Any) -> None:
    """A NaN in one rank's gradient lands in one rank's shard only, yet every rank skips (ZeRO
    gathers the verdict; data parallel sees the same average everywhere); grad_scale and the
    optimizer's own max_grad_norm give the plain optimizer's results; max_grad_norm on both the
    wrapper and the optimizer is refused on every rank."""
    n, rank = comm.size, comm.rank
    named = make_params(np.float32)
    ddp_params, zero_params, ref_params = copies(named), copies(named), copies(named)
    ddp = DistributedOptimizer(fo.AdamW(ddp_params, lr=1e-2, skip_nonfinite=True, max_grad_norm=3.0), comm,
                               bucket_cap_mb=TINY)
    zero = ZeroRedundancyOptimizer(zero_params, fo.AdamW, comm, bucket_cap_mb=TINY, lr=1e-2, skip_nonfinite=True,
                                   max_grad_norm=3.0)
    ref = fo.AdamW(ref_params, lr=1e-2, skip_nonfinite=True, max_grad_norm=3.0)
    for step in range(4):
        per_rank = [rank_grads(np.float32, step, r, named) for r in range(n)]
        if step == 2:
            per_rank[n - 1]["p6"][2999] = np.nan  # in one rank's shard only
        scaled = [{k: np.multiply(v, np.float32(8.0), out=np.empty_like(v)) for k, v in g.items()} for g in per_rank]
        infos = [ddp.step({k: v.copy(order="K") for k, v in scaled[rank].items()}, grad_scale=8.0),
                 zero.step(scaled[rank], grad_scale=8.0)]
        want = ref.step(average(per_rank))
        for info in infos:
            assert info.skipped == want.skipped == (step == 2), (info, want)
            assert comm.allgather(repr(info)) == [repr(info)] * n  # repr: a skipped step's norm is NaN
    for (name, a), (_, b), (_, c) in zip(ddp_params, zero_params, ref_params):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6, err_msg=f"params[{name!r}]")
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6, err_msg=f"params[{name!r}]")
    raises_everywhere(comm, ValueError, "set both on DistributedOptimizer", lambda: DistributedOptimizer(
        fo.SGD(copies(named), max_grad_norm=1.0), comm, max_grad_norm=2.0))
    # the optimizer's own max_grad_norm is the wrapper's: the same norm, the same bits
    twins = [copies(named), copies(named)]
    by_wrapper = DistributedOptimizer(fo.AdamW(twins[0], lr=1e-2), comm, max_grad_norm=2.0, bucket_cap_mb=TINY)
    by_inner = DistributedOptimizer(fo.AdamW(twins[1], lr=1e-2, max_grad_norm=2.0), comm, bucket_cap_mb=TINY)
    for step in range(3):
        g = rank_grads(np.float32, step, rank, named)
        a = by_wrapper.step({k: v.copy(order="K") for k, v in g.items()})
        b = by_inner.step({k: v.copy(order="K") for k, v in g.items()})
        assert a == b and by_inner.grad_norm == a.grad_norm, (a, b, by_inner.grad_norm)
    for (name, x), (_, y) in zip(twins[0], twins[1]):
        same(x, y, f"max_grad_norm on the wrapper or its optimizer: params[{name!r}]")
    with_skip = [by_wrapper, zero]
    for opt in with_skip:  # skip_nonfinite is the optimizer's, seen through the wrapper, and compared
        opt.skip_nonfinite = rank == 0
        assert opt.optimizer.skip_nonfinite == (rank == 0)
        if n > 1:
            raises_everywhere(comm, ValueError, "different skip_nonfinite", opt.step, g)
        opt.skip_nonfinite = True
    raises_everywhere(comm, ValueError, "set both on DistributedOptimizer", setattr, by_inner, "max_grad_norm", 1.0)
    zero.optimizer.max_grad_norm = 1.0  # the wrapper's is 3.0
    before = [a.copy(order="K") for _, a in zero_params]
    raises_everywhere(comm, ValueError, "set both on ZeroRedundancyOptimizer", zero.step, per_rank[rank])
    for (_, a), b in zip(zero_params, before):
        same(a, b, "a refused step changed nothing")
    zero.max_grad_norm = None  # now the local optimizer's clips the global norm
    zero.step(per_rank[rank])


@check
def mpi_reduction_agrees_across_ranks(comm: Any) -> None:
    """reduction='mpi' (MPI's Reduce_scatter) also leaves the same bits on every rank, close to
    the rank-order average (equal to it for two ranks, where the order cannot matter)."""
    n, rank = comm.size, comm.rank
    named = make_params(np.float32)
    ddp_params, zero_params, ref_params = copies(named), copies(named), copies(named)
    ddp = DistributedOptimizer(fo.AdamW(ddp_params, lr=1e-2), comm, reduction="mpi", bucket_cap_mb=TINY)
    zero = ZeroRedundancyOptimizer(zero_params, fo.AdamW, comm, reduction="mpi", bucket_cap_mb=TINY, lr=1e-2)
    ref = fo.AdamW(ref_params, lr=1e-2)
    for step in range(3):
        per_rank = [rank_grads(np.float32, step, r, named) for r in range(n)]
        ddp.step({k: v.copy(order="K") for k, v in per_rank[rank].items()})
        zero.step(per_rank[rank])
        ref.step(average(per_rank))
    for (name, a), (_, b), (_, c) in zip(ddp_params, zero_params, ref_params):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6, err_msg=f"params[{name!r}]")
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6, err_msg=f"params[{name!r}]")
        if n <= 2:
            same(a, c, f"params[{name!r}]")
            same(b, c, f"params[{name!r}]")
    same_on_every_rank(comm, [a for _, a in ddp_params] + [b for _, b in zero_params], "reduction='mpi'")


def _subcomm(comm: Any, size: int) -> Any:
    return comm.Split(0 if comm.rank < size else MPI.UNDEFINED, comm.rank)


def _train(opt: Any, like: list[tuple[str, np.ndarray]], world: int, rank: int, steps: range, dtype: Any) -> None:
    """world > 0: step on this rank's gradients; world < 0: on the average of -world ranks'
    gradients (what a single process is fed)."""
    for step in steps:
        if world > 0:
            opt.step(rank_grads(dtype, step, rank, like))
        else:
            opt.step(average([rank_grads(dtype, step, r, like) for r in range(-world)]))


@check
def checkpoints_change_world_size(comm: Any) -> None:
    """Save on k ranks, load on N (and back), through consolidated state dicts; plain <-> ZeRO
    <-> data parallel; each rank's own shard round-trips. Every resumed run ends on the bits of
    a single process fed the same averages."""
    n, rank = comm.size, comm.rank
    for cls, kwargs in ((fo.AdamW, dict(lr=1e-2, weight_decay=0.1)), (fo.Ranger, dict(lr=1e-2, k=2)),
                        (fo.LAMB, dict(lr=1e-2)), (fo.NAdam, dict(lr=1e-2)),
                        (fo.AdamW, dict(lr=1e-2, state_dtype="bfloat16", state_rounding="stochastic", seed=4)),
                        (fo.AdamW, dict(lr=1e-2, state_dtype="int8", min_8bit_size=64))):
        for k in sorted({1, max(1, n - 1), n}):
            dtype = np.float64 if cls is fo.LAMB else np.float32
            named = make_params(dtype)
            # the reference: k ranks' averages for 3 steps, then N ranks' for 3
            ref_params = copies(named)
            ref = cls(groups_of(ref_params, 1e-2), **kwargs)
            _train(ref, named, -k, 0, range(3), dtype)
            _train(ref, named, -n, 0, range(3, 6), dtype)
            # ZeRO on k ranks, consolidated, to ZeRO on N
            sub = _subcomm(comm, k)
            saved = None
            params = copies(named)
            if sub != MPI.COMM_NULL:
                first = ZeroRedundancyOptimizer(groups_of(params, 1e-2), cls, sub, bucket_cap_mb=TINY, **kwargs)
                _train(first, named, k, sub.rank, range(3), dtype)
                saved = first.consolidated_state_dict()
                sub.Free()
            saved = comm.bcast(saved, root=0)
            weights = comm.bcast([a for _, a in params], root=0)
            resumed = copies(list(zip([n_ for n_, _ in named], weights)))
            zero = ZeroRedundancyOptimizer(groups_of(resumed, 1e-2), cls, comm, bucket_cap_mb=TINY, **kwargs)
            zero.load_state_dict(saved if rank == 0 else None)
            _train(zero, named, n, rank, range(3, 6), dtype)
            for (name, a), (_, b) in zip(resumed, ref_params):
                same(a, b, f"{cls.__name__} saved on {k}, resumed on {n} ranks: params[{name!r}]")
            full = zero.consolidated_state_dict()
            if rank == 0:
                same(full, ref.state_dict(), f"{cls.__name__} saved on {k}, resumed on {n}: state")
            # ... and back: N -> k, through a plain optimizer's and DistributedOptimizer's formats
            full = comm.bcast(full, root=0)
            sub = _subcomm(comm, k)
            if sub != MPI.COMM_NULL:
                back = copies(ref_params)
                later = ZeroRedundancyOptimizer(groups_of(back, 1e-2), cls, sub, bucket_cap_mb=0.01, **kwargs)
                later.load_state_dict(full if sub.rank == 0 else None)
                ddp_back = copies(ref_params)
                ddp = DistributedOptimizer(cls(groups_of(ddp_back, 1e-2), **kwargs), sub)
                ddp.load_state_dict(full if sub.rank == 0 else None)
                plain = cls(groups_of(copies(ref_params), 1e-2), **kwargs)
                plain.load_state_dict(full)
                _train(later, named, k, sub.rank, range(6, 8), dtype)
                _train(ddp, named, k, sub.rank, range(6, 8), dtype)
                _train(plain, named, -k, 0, range(6, 8), dtype)
                for (name, a), (_, b), c in zip(back, ddp_back, opt_arrays(plain)):
                    same(a, c, f"{cls.__name__} back to {k} ranks: ZeRO params[{name!r}]")
                    same(b, c, f"{cls.__name__} back to {k} ranks: DistributedOptimizer params[{name!r}]")
                sub.Free()
            comm.Barrier()
        # each rank's shard round-trips into a fresh optimizer of the same layout
        named = make_params(np.float32)
        a_params, b_params = copies(named), copies(named)
        a = ZeroRedundancyOptimizer(groups_of(a_params, 1e-2), cls, comm, bucket_cap_mb=TINY, **kwargs)
        _train(a, named, n, rank, range(2), np.float32)
        shard = pickle.loads(pickle.dumps(a.state_dict()))
        b = ZeroRedundancyOptimizer(groups_of(b_params, 1e-2), cls, comm, bucket_cap_mb=TINY, **kwargs)
        for (_, x), (_, y) in zip(b_params, a_params):
            np.copyto(x, y)
        b.load_state_dict(shard)
        _train(a, named, n, rank, range(2, 4), np.float32)
        _train(b, named, n, rank, range(2, 4), np.float32)
        for (name, x), (_, y) in zip(a_params, b_params):
            same(x, y, f"{cls.__name__} shard round trip: params[{name!r}]")


@check
def bad_setups_fail_on_every_rank(comm: Any) -> None:
    n, rank = comm.size, comm.rank
    last = n - 1
    if n > 1:
        shapes = [np.zeros((3, 4)), np.zeros(5)] if rank != last else [np.zeros((3, 5)), np.zeros(5)]
        message = raises_everywhere(comm, ValueError, f"rank {last} has params[0] with shape (3, 5)",
                                    lambda: DistributedOptimizer(fo.SGD(shapes, lr=0.1), comm))
        assert "rank 0 has shape (3, 4)" in message, message
        raises_everywhere(comm, ValueError, f"rank {last} has params[0] with shape (3, 5)",
                          lambda: ZeroRedundancyOptimizer(shapes, fo.SGD, comm, lr=0.1))
        dtypes = [np.zeros(3, np.float32 if rank != last else np.float64)]
        raises_everywhere(comm, ValueError, "float64", lambda: ZeroRedundancyOptimizer(dtypes, fo.SGD, comm, lr=0.1))
        named = {"w" if rank != last else "v": np.zeros(3)}
        raises_everywhere(comm, ValueError, "param_groups[0] with parameters",
                          lambda: DistributedOptimizer(fo.SGD(named, lr=0.1), comm))
        raises_everywhere(comm, ValueError, f"rank {last} has defaults [('lr', 0.3)]; rank 0 has [('lr', 0.1)]",
                          lambda: ZeroRedundancyOptimizer([np.zeros(3)], fo.SGD, comm, lr=0.3 if rank == last else 0.1))
        raises_everywhere(comm, ValueError, "options",
                          lambda: DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1), comm,
                                                       bucket_cap_mb=1.0 + (rank == last)))
    raises_everywhere(comm, ValueError, "bucket_cap_mb must be > 0",
                      lambda: DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1), comm,
                                                   bucket_cap_mb=-1.0 if rank == last else 1.0))
    raises_everywhere(comm, ValueError, "reduction must be", lambda: ZeroRedundancyOptimizer(
        [np.zeros(3)], fo.SGD, comm, lr=0.1, reduction="sum"))
    raises_everywhere(comm, ValueError, "lr must be >= 0", lambda: ZeroRedundancyOptimizer(
        [np.zeros(3)], fo.SGD, comm, lr=-1.0))
    raises_everywhere(comm, TypeError, "must build a fastoptim optimizer", lambda: ZeroRedundancyOptimizer(
        [np.zeros(3)], lambda params, **kwargs: object(), comm))

    params = [np.ones((4, 3)), np.ones(3), np.ones(())]
    for kind in ("ddp", "zero"):
        p = [a.copy() for a in params]
        opt: Any = (DistributedOptimizer(fo.Adam(p, lr=0.1), comm) if kind == "ddp" else
                    ZeroRedundancyOptimizer(p, fo.Adam, comm, lr=0.1))
        grads = [np.full_like(a, 1.0 + rank) for a in params]
        short = grads[:2] if rank == last else grads
        message = raises_everywhere(comm, ValueError, f"rank {last}: grads has 2 arrays; the optimizer has 3 "
                                    "parameters", opt.step, short)
        assert "failed on every rank" in message
        before = [a.copy() for a in p]
        wrong = [g.astype(np.float32) if rank == 0 and i == 1 else g for i, g in enumerate(grads)]
        raises_everywhere(comm, TypeError, "rank 0: grads[1] has dtype float32", opt.step, wrong)
        partial = {0: grads[0], 1: grads[1]} if rank == last else dict(enumerate(grads))
        raises_everywhere(comm, ValueError, "no entry for parameter 2", opt.step, partial)
        if n > 1:
            opt.max_grad_norm = 1.0 if rank == 0 else 2.0
            raises_everywhere(comm, ValueError, "different max_grad_norm", opt.step, grads)
            opt.max_grad_norm = None
        for a, b in zip(p, before):
            same(a, b, f"{kind}: refused steps changed nothing")
        opt.step([g.copy() for g in grads])  # the optimizer is still usable, and ranks still agree
        same_on_every_rank(comm, p, f"{kind} after refused steps")
        hyper = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "param_names")}
        nonsense = {"state": {0: {"step": 1, "nonsense": np.zeros((4, 3))}},
                    "param_groups": [{**hyper, "params": [0, 1, 2]}]}
        raises_everywhere(comm, ValueError, "has no state named", opt.load_state_dict, nonsense if rank == 0 else None)
        raises_everywhere(comm, TypeError, "rank 0 passed no state dict", opt.load_state_dict, None)
    g = np.ones(3)
    p = np.ones(3)
    ddp = DistributedOptimizer(fo.SGD([p], lr=0.1), comm)
    raises_everywhere(comm, ValueError, "share memory", ddp.step, [p if rank == 0 else g])
    frozen = np.ones(3)
    frozen.flags.writeable = False
    raises_everywhere(comm, ValueError, "read-only", ddp.step, [frozen])
    try:
        DistributedOptimizer(fo.SGD([np.zeros(1)], lr=0.1), comm="world")
    except TypeError as error:
        assert "intracommunicator" in str(error)  # noqa: PT017  (runs under mpiexec, not pytest)
    else:
        raise AssertionError("comm='world' was accepted")


@check
def a_communicator_of_one_is_the_plain_optimizer(comm: Any) -> None:
    for cls, kwargs in ((fo.Adam, dict(lr=1e-2, amsgrad=True)), (fo.LARS, dict()), (fo.Ranger, dict(k=2))):
        named = make_params(np.float32, seed=comm.rank)
        a, b, c = copies(named), copies(named), copies(named)
        ddp = DistributedOptimizer(cls(a, **kwargs), MPI.COMM_SELF)
        zero = ZeroRedundancyOptimizer(b, cls, MPI.COMM_SELF, **kwargs)
        plain = cls(c, **kwargs)
        for step in range(4):
            grads = rank_grads(np.float32, step, 0, named)
            kept = {k: v.copy(order="K") for k, v in grads.items()}
            ddp.step(grads)
            same(grads, kept, "size 1: gradients untouched")
            zero.step(grads)
            plain.step(grads)
        for (name, x), (_, y), (_, z) in zip(a, b, c):
            same(x, z, f"size 1 DistributedOptimizer params[{name!r}]")
            same(y, z, f"size 1 ZeroRedundancyOptimizer params[{name!r}]")
        same(zero.consolidated_state_dict(), plain.state_dict(), "size 1 state")
        same(ddp.state_dict(), plain.state_dict(), "size 1 state")


@check
def threads_per_rank(comm: Any) -> None:
    """By default ranks x threads fit the cores of the node; num_threads overrides."""
    infos = comm.allgather((MPI.Get_processor_name(), sorted(os.sched_getaffinity(0))))
    share = share_of_cores(infos, comm.rank)
    local = sum(1 for name, _ in infos if name == infos[comm.rank][0])
    cores = len(set().union(*(set(c) for name, c in infos if name == infos[comm.rank][0])))
    assert share == max(1, min(len(infos[comm.rank][1]), cores // local)), share
    saved = os.environ.pop("OMP_NUM_THREADS", None)
    try:
        assert default_num_threads(comm) == share
        opt = DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1), comm)
        assert opt.num_threads == share == fo.get_num_threads(), (opt.num_threads, share, fo.get_num_threads())
        assert local * share <= max(cores, local), (local, share, cores)
        os.environ["OMP_NUM_THREADS"] = "1"
        assert default_num_threads(comm) == 1
        os.environ["OMP_NUM_THREADS"] = "64"
        assert default_num_threads(comm) == share
        opt = DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1), comm, num_threads=3)
        assert fo.get_num_threads() == 3 == opt.num_threads
        zero = ZeroRedundancyOptimizer([np.zeros(3)], fo.SGD, comm, lr=0.1, num_threads=2)
        assert fo.get_num_threads() == 2 == zero.num_threads
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        if saved is not None:
            os.environ["OMP_NUM_THREADS"] = saved
        fo.set_num_threads(share)


@check
def schedulers_drive_both(comm: Any) -> None:
    n, rank = comm.size, comm.rank
    named = make_params(np.float32)
    a, b, c = copies(named), copies(named), copies(named)
    ddp = DistributedOptimizer(fo.AdamW(groups_of(a, 1e-2), lr=1e-2), comm)
    zero = ZeroRedundancyOptimizer(groups_of(b, 1e-2), fo.AdamW, comm, lr=1e-2)
    plain = fo.AdamW(groups_of(c, 1e-2), lr=1e-2)
    scheds = [fo.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (ddp, zero, plain)]  # type: ignore[arg-type]
    for step in range(5):
        per_rank = [rank_grads(np.float32, step, r, named) for r in range(n)]
        ddp.step({k: v.copy(order="K") for k, v in per_rank[rank].items()})
        zero.step(per_rank[rank])
        plain.step(average(per_rank))
        for s in scheds:
            s.step()
    for (name, x), (_, y), (_, z) in zip(a, b, c):
        same(x, z, f"scheduled DistributedOptimizer params[{name!r}]")
        same(y, z, f"scheduled ZeroRedundancyOptimizer params[{name!r}]")


# ---- the checkpoint written by one world size and read by another ---------------------------
RUN_CLASSES = ((fo.AdamW, dict(lr=1e-2, weight_decay=0.1)), (fo.Ranger, dict(lr=1e-2, k=2)), (fo.LAMB, dict(lr=1e-2)))


def save_run(comm: Any, folder: Path) -> None:
    for cls, kwargs in RUN_CLASSES:
        params = copies(make_params(np.float32))
        zero = ZeroRedundancyOptimizer(groups_of(params, 1e-2), cls, comm, **kwargs)
        _train(zero, params, comm.size, comm.rank, range(3), np.float32)
        full = zero.consolidated_state_dict()
        if comm.rank == 0:
            with open(folder / f"{cls.__name__}.pkl", "wb") as f:
                pickle.dump({"params": params, "optimizer": full, "world_size": comm.size}, f)


def load_run(comm: Any, folder: Path) -> None:
    n, rank = comm.size, comm.rank
    for cls, kwargs in RUN_CLASSES:
        with open(folder / f"{cls.__name__}.pkl", "rb") as f:
            saved = pickle.load(f)
        named = make_params(np.float32)
        ref_params = copies(named)
        ref = cls(groups_of(ref_params, 1e-2), **kwargs)
        _train(ref, named, -saved["world_size"], 0, range(3), np.float32)
        params = copies(saved["params"])
        zero = ZeroRedundancyOptimizer(groups_of(params, 1e-2), cls, comm, **kwargs)
        zero.load_state_dict(saved["optimizer"] if rank == 0 else None)
        _train(zero, named, n, rank, range(3, 6), np.float32)
        _train(ref, named, -n, 0, range(3, 6), np.float32)
        for (name, a), (_, b) in zip(params, ref_params):
            same(a, b, f"{cls.__name__} saved on {saved['world_size']} ranks, loaded on {n}: params[{name!r}]")
        same_on_every_rank(comm, [a for _, a in params], f"{cls.__name__} loaded")


def _local_sum(batches: list[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray | None]:
    """One rank's accumulated sum, as the buffers hold it: zeros plus each micro-batch in turn."""
    out: dict[str, np.ndarray | None] = {}
    for name in batches[0]:
        parts = [b[name] for b in batches if b[name] is not None]
        if not parts:
            out[name] = None
            continue
        total = np.zeros_like(parts[0])
        for part in parts:
            np.add(total, part, out=total)
        out[name] = total
    return out


def _averaged(per_rank: list[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray | None]:
    kept = [{k: v for k, v in g.items() if v is not None} for g in per_rank]
    avg: dict[str, np.ndarray | None] = dict(average(kept))
    return {k: avg.get(k) for k in per_rank[0]}


@check
def accumulation_ema_and_frozen_parameters(comm: Any) -> None:
    """Gradients of None (on every rank), micro-batches summed on each rank and averaged once at
    the step, and the EMA of the weights: both wrappers end on the plain optimizer's bits, fed
    the rank-order average of the ranks' sums, parameters, state, clocks and EMA alike."""
    n, rank = comm.size, comm.rank
    named = make_params(np.float32)
    kwargs = dict(lr=1e-2, weight_decay=0.1, ema_decay=0.9, ema_warmup=True)
    ddp_params, zero_params, ref_params = copies(named), copies(named), copies(named)
    ddp = DistributedOptimizer(fo.AdamW(groups_of(ddp_params, 1e-2), **kwargs), comm, bucket_cap_mb=TINY)
    zero = ZeroRedundancyOptimizer(groups_of(zero_params, 1e-2), fo.AdamW, comm, bucket_cap_mb=TINY, **kwargs)
    ref = fo.AdamW(groups_of(ref_params, 1e-2), **kwargs)
    # (micro-batches accumulated, whether the step gets the last one, parameters left None)
    plans = [(0, True, {"p2"}), (2, True, set()), (2, False, {"p3"}), (1, True, {"p0", "p7"}), (0, True, set())]
    for step, (micro, last, frozen) in enumerate(plans):
        batches = []
        for m in range(micro + int(last)):
            per_rank = [rank_grads(np.float32, 10 * step + m, r, named) for r in range(n)]
            batches.append([{k: None if k in frozen else v for k, v in g.items()} for g in per_rank])
        for m in range(micro):
            ddp.accumulate({k: None if v is None else v.copy(order="K") for k, v in batches[m][rank].items()})
            zero.accumulate(batches[m][rank])
        if last:
            mine = batches[-1][rank]
            ddp.step({k: None if v is None else v.copy(order="K") for k, v in mine.items()})
            zero.step(mine)
        else:
            ddp.step()
            zero.step()
        assert ddp.pending == zero.pending == 0
        sums = [_local_sum([b[r] for b in batches]) for r in range(n)]
        ref.step(_averaged(sums))
    label = "accumulation, EMA and None gradients"
    for (name, a), (_, b), (_, c) in zip(ddp_params, zero_params, ref_params):
        same(a, c, f"{label}: DistributedOptimizer params[{name!r}]")
        same(b, c, f"{label}: ZeroRedundancyOptimizer params[{name!r}]")
    same(ddp.state_dict(), ref.state_dict(), f"{label}: DistributedOptimizer state")
    full = zero.consolidated_state_dict(to=0)
    if rank == 0:
        same(full, ref.state_dict(), f"{label}: consolidated ZeroRedundancyOptimizer state, EMA included")
    with zero.swap_ema():  # every rank holds the whole EMA
        for name, a in zero_params:
            same(a, ref.ema[name], f"{label}: ZeroRedundancyOptimizer.swap_ema params[{name!r}]")
    for (_, a), (_, c) in zip(zero_params, ref_params):
        same(a, c, f"{label}: the weights are back after swap_ema")
    # None on some ranks only, or micro-batches on some ranks only: every rank raises
    if n > 1:
        g = rank_grads(np.float32, 99, rank, named)
        for opt in (ddp, zero):
            odd = {k: None if (k == "p1" and rank == 1) else v.copy(order="K") for k, v in g.items()}
            raises_everywhere(comm, ValueError, "read different gradients", opt.step, odd)
            if rank == 0:
                opt.accumulate({k: v.copy(order="K") for k, v in g.items()})
            raises_everywhere(comm, ValueError, "read different gradients", opt.step,
                              {k: v.copy(order="K") for k, v in g.items()})
    before = [a.copy(order="K") for _, a in zero_params]
    raises_everywhere(comm, ValueError, "none were accumulated", ZeroRedundancyOptimizer(
        groups_of(copies(named), 1e-2), fo.AdamW, comm, bucket_cap_mb=TINY, **kwargs).step)
    for (_, a), b in zip(zero_params, before):
        same(a, b, "a refused step changed nothing")
    # what the optimizer's own step would refuse is refused before the first message, on every rank
    ddp.optimizer._discard_accumulated()  # what rank 0 alone accumulated above
    zero._discard_accumulated()
    g = rank_grads(np.float32, 77, rank, named)
    ddp.accumulate({k: v.copy(order="K") for k, v in g.items()})
    kept = [a.copy(order="K") for _, a in ddp_params] + [e.copy(order="K") for e in ddp.ema.values()]
    aliased = {k: v.copy(order="K") for k, v in g.items()}
    if rank == 0:
        aliased["p0"] = ddp.ema["p0"]  # a gradient that is the EMA: the average would overwrite it
    raises_everywhere(comm, ValueError, "shares memory", ddp.step, aliased)
    assert ddp.pending == 1
    for k, (a, b) in enumerate(zip([a for _, a in ddp_params] + list(ddp.ema.values()), kept)):
        same(a, b, f"a step refused on one rank changed nothing on any: array {k}")
    ddp.step()
    zero.accumulate(g)
    with zero.swap_ema():
        raises_everywhere(comm, RuntimeError, "inside swap_ema", zero.step)
    assert zero.pending == 1  # the refused step kept the sums
    shard = zero.state_dict()
    zero.load_state_dict(shard)  # a shard with pending sums loads them; one without drops this rank's
    assert zero.pending == 1
    zero.step()
    saved = zero.state_dict()
    zero.accumulate(g)
    zero.load_state_dict(saved)
    assert zero.pending == 0
    if rank == 0:
        zero.optimizer._swapped = True  # as if rank 0 alone were inside swap_ema: every rank raises
    try:
        def enter() -> None:
            with zero.swap_ema():
                pass
        raises_everywhere(comm, RuntimeError, "do not nest", enter)
    finally:
        zero.optimizer._swapped = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="fail unless the world has this many ranks")
    parser.add_argument("-k", dest="only", help="run only the checks whose name contains this")
    parser.add_argument("--save", type=Path, help="write the cross-world-size checkpoints into this folder")
    parser.add_argument("--load", type=Path, help="read them from this folder and check the resumed runs")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if args.size is not None and comm.size != args.size:
        print(f"expected {args.size} ranks, got {comm.size}: is mpiexec the one of the MPI that mpi4py uses "
              f"({MPI.Get_library_version().splitlines()[0]})?", flush=True)
        return 2
    if args.save or args.load:
        chosen = [("save" if args.save else "load", lambda c: (save_run if args.save else load_run)(
            c, args.save or args.load))]
    else:
        chosen = [(fn.__name__, fn) for fn in CHECKS if args.only is None or args.only in fn.__name__]
    for name, fn in chosen:
        start = time.perf_counter()
        try:
            fn(comm)
        except BaseException:  # noqa: BLE001 - any failure must stop every rank
            print(f"[rank {comm.rank}/{comm.size}] FAILED {name}\n{traceback.format_exc()}", flush=True)
            comm.Abort(1)
            os._exit(1)  # should Abort return
        comm.Barrier()
        if comm.rank == 0:
            print(f"ok {name} ({time.perf_counter() - start:.1f} s, {comm.size} ranks)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
