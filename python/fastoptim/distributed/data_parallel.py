"""Data parallelism: every rank holds the whole model and optimizer, gradients are averaged."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._forwarding import forwarded
from .._step_options import StepInfo
from ..lookahead import Lookahead
from ..optimizer import Optimizer
from ..schedule_free import ScheduleFree
from ._base import DistributedBase
from ._common import check_options, compare_signatures, flat, node_info, raise_together, resolve_comm, set_rank_threads
from ._exchange import Exchange, GradMeasure, broadcast_arrays
from ._layout import plan
from ._signature import core_of, optimizer_items
from ._state import refuse_pending

__all__ = ["DistributedOptimizer"]


class DistributedOptimizer(DistributedBase):
    r"""Data-parallel training over MPI around any fastoptim optimizer (Lookahead included).

    Every rank holds the whole model and a whole optimizer. ``step(grads)`` averages each
    gradient across the N ranks of `comm`,

    .. math::
        \bar g = \bigl(((g_0 + g_1) + g_2) + \dots + g_{N-1}\bigr) / N

    writes :math:`\bar g` into the gradient arrays you passed (as torch's DDP leaves the
    average in ``.grad``), then steps the optimizer locally, clipping :math:`\bar g` to a global
    norm if asked (folded into the update: the arrays keep the average). Gradients travel in
    buckets of at most `bucket_cap_mb`: small arrays packed into one flat buffer, large ones
    sent from where they lie. Each element of the sum is computed
    once, by one rank, then copied to all (a reduce-scatter and an allgather, the traffic of
    one Allreduce), so after any number of steps every rank holds the same bits.

    At construction, collectively: the ranks' parameters (names, shapes, dtypes, groups,
    hyper-parameters, steps taken) must match, or every rank raises ``ValueError`` naming the
    first difference; then the parameters and the optimizer state are broadcast from rank 0,
    so every rank starts equal; then each rank's fastoptim threads are set (see
    `num_threads`). A communicator of size 1 gives the plain optimizer's results.

    Args:
        optimizer: a fastoptim optimizer, built alike on every rank.
        comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``).
        max_grad_norm: clip the averaged gradient to this global 2-norm, as torch's
            ``clip_grad_norm_`` (scale by ``max_grad_norm / (norm + 1e-6)`` when below 1);
            ``math.inf`` measures the norm without clipping. The norm of the last step is
            ``grad_norm``. Default None: no clipping, no norm. The optimizer's own
            ``max_grad_norm`` is the same (the same global norm, measured the same way);
            setting both is refused. The optimizer's ``skip_nonfinite`` (also
            ``skip_nonfinite`` here) skips a step on every rank alike.
        bucket_cap_mb: the largest message, in MiB (25, torch DDP's default).
        reduction: ``"rank_order"`` (default) sums in rank order on the owning rank, the same
            bits under any MPI library; ``"mpi"`` lets MPI's ``Reduce_scatter`` sum.
        num_threads: fastoptim threads for this rank. Default: the cores of this node shared
            by its ranks (``cores // ranks``, each rank's own affinity respected, at least 1),
            and no more than ``OMP_NUM_THREADS`` when that is set. It calls
            :func:`fastoptim.set_num_threads`, which is process-wide.

    Every rank must call ``step``, ``load_state_dict`` and the constructor, in the same order:
    they communicate. A rank whose gradients are refused makes every rank raise.
    """

    def __init__(self, optimizer: Optimizer | Lookahead, comm: Any = None, *, max_grad_norm: float | None = None,
                 bucket_cap_mb: float = 25.0, reduction: str = "rank_order", num_threads: int | None = None) -> None:
        if not isinstance(optimizer, (Optimizer, Lookahead)):
            raise TypeError(f"optimizer must be a fastoptim optimizer, got {type(optimizer).__name__}")
        comm = resolve_comm(comm)
        error: BaseException | None = None
        options: tuple[Any, ...] = (None, 1, "rank_order", None)
        try:
            options = check_options(max_grad_norm, bucket_cap_mb, reduction, num_threads)
        except (TypeError, ValueError) as caught:
            error = caught
        self._max_grad_norm: float | None
        self._max_grad_norm, cap, self.reduction, threads = options
        self.optimizer = optimizer
        groups = optimizer.param_groups
        self._names: list[Hashable] = [n for g in groups for n in g["param_names"]]
        self._params: list[np.ndarray] = [p for g in groups for p in g["params"]]
        if error is None:
            try:
                self._clip_norm()
                self._refuse_bfloat16(self._names, self._params, "DistributedOptimizer()")
            except (TypeError, ValueError) as caught:
                error = caught
        raise_together(comm, error, "DistributedOptimizer()")
        self.comm = comm
        self.grad_norm: float | None = None

        items = optimizer_items(optimizer) + [("options (max_grad_norm, bucket bytes, reduction)",
                                               repr((self._max_grad_norm, cap, self.reduction)))]
        gathered = comm.allgather((items, node_info()))
        compare_signatures([g[0] for g in gathered], "DistributedOptimizer()")
        self.num_threads = set_rank_threads([g[1] for g in gathered], comm.rank, threads)

        state = optimizer.state
        slots = [state[n][s] for n in self._names for s in sorted(state.get(n, {}))]
        ema = core_of(optimizer).ema or {}
        broadcast_arrays(comm, self._params + slots + [ema[n] for n in self._names if n in ema], cap)
        layout = plan([p.size for p in self._params], [p.dtype for p in self._params], comm.size, cap,
                      whole_arrays=False)
        self._exchange = Exchange(comm, layout, self.reduction, shard=False)
        self._zeros: dict[int, np.ndarray] = {}

    # ---- what the wrapped optimizer shows ---------------------------------------------------
    param_groups = forwarded("param_groups", "The optimizer's groups: edit them (or drive them with a scheduler) "
                             "alike on every rank.")
    defaults = forwarded("defaults")
    state = forwarded("state")
    ema = forwarded("ema", "The optimizer's EMA of the weights (the same on every rank), or None.")
    pending = forwarded("pending", "Micro-batches accumulated on this rank since the last step.")

    def swap_ema(self) -> Any:
        """The optimizer's :meth:`fastoptim.Optimizer.swap_ema` (every rank holds the whole EMA)."""
        return self.optimizer.swap_ema()

    def train(self) -> None:
        """A Schedule-Free optimizer's :meth:`~fastoptim.ScheduleFreeAdamW.train`, alike on every rank."""
        self._schedule_free("train").train()

    def eval(self) -> None:
        """A Schedule-Free optimizer's :meth:`~fastoptim.ScheduleFreeAdamW.eval`, alike on every rank."""
        self._schedule_free("eval").eval()

    def _schedule_free(self, action: str) -> ScheduleFree:
        if not isinstance(self.optimizer, ScheduleFree):
            raise TypeError(f"{action}() switches a Schedule-Free optimizer between y and x; this wraps "
                            f"{type(self.optimizer).__name__}")
        return self.optimizer

    def accumulate(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None], *,
                   grad_scale: float | None = None) -> None:
        """Add a micro-batch's gradients into this rank's buffers, with no message: the ranks'
        sums are averaged once, by the next :meth:`step`. Every rank must accumulate alike
        (the same parameters' gradients), which the step checks."""
        self.optimizer.accumulate(grads, grad_scale=grad_scale)

    def memory(self) -> dict[str, int]:
        """This rank's optimizer memory in bytes: ``state`` (the optimizer's state arrays) and
        ``buffers`` (the gradient shard and message buffers)."""
        state = sum(a.nbytes for slots in self.optimizer.state.values() for a in slots.values())
        return {"state": state, "buffers": self._exchange.nbytes()}

    # ---- stepping ---------------------------------------------------------------------------
    def step(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None] | None = None, *,
             grad_scale: float | None = None) -> StepInfo:
        """Average `grads` across ranks into the arrays themselves, then step (clipping if asked).

        `grads` is a dict keyed like the parameters or a list in their order; each gradient
        must be writable and have its parameter's dtype, shape and memory order, or be None on
        every rank (the parameter is left alone). After :meth:`accumulate`, the step adds
        `grads` (if any) to this rank's sum and averages the sums instead, in the buffers.
        `grad_scale` and the result are as :meth:`fastoptim.Optimizer.step`'s."""
        inner = self.optimizer
        touched = core_of(inner)._touched_indices()
        ordered, mult, clip = self._checked_grads(grads, "DistributedOptimizer.step", grad_scale,
                                                  writable=touched is None, touched=touched,
                                                  local_check=core_of(inner)._check_step)
        local: list[np.ndarray | None] | None = ordered
        if touched is not None:  # the sums are averaged, once, where they lie
            if grads is not None:
                inner.accumulate(ordered, grad_scale=grad_scale)
            arrays, local, mult = core_of(inner)._accumulated_in_order(), None, 1.0
        else:
            arrays = [self._zeros_for(i) if g is None else g for i, g in enumerate(ordered)]
        if clip is None and not inner.skip_nonfinite:
            if self.comm.size > 1:
                self._exchange.allreduce([flat(a) for a in arrays], None)
            done: StepInfo = inner._step(local, mult, None, False)
            return done
        measure = GradMeasure(mult)  # each rank measures the parts it averages: the norm costs 1/N a pass
        self._exchange.allreduce([flat(a) for a in arrays], measure)
        return self._step_measured(local, mult, clip, measure)

    def _zeros_for(self, index: int) -> np.ndarray:
        """Zeros in place of a gradient every rank left None: the buckets keep their layout."""
        zeros = self._zeros.get(index)
        if zeros is None:
            zeros = self._zeros[index] = np.zeros_like(self._params[index])
        return zeros

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state dict: the same on every rank, loadable by the plain optimizer
        and by :class:`ZeroRedundancyOptimizer` under any world size. Gradients accumulated
        since the last step are each rank's own: a state dict holding them is this rank's, and
        :meth:`load_state_dict` (which loads rank 0's everywhere) refuses it."""
        saved: dict[str, Any] = self.optimizer.state_dict()
        return saved

    def consolidated_state_dict(self, to: int = 0) -> dict[str, Any] | None:
        """:meth:`state_dict` on rank `to`, None on the others (as ZeroRedundancyOptimizer's)."""
        if isinstance(to, bool) or not isinstance(to, int) or not 0 <= to < self.comm.size:
            raise ValueError(f"to must be a rank of the communicator (0 to {self.comm.size - 1}), got {to!r}")
        return self.state_dict() if self.comm.rank == to else None

    def load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """Collective: load rank 0's `state_dict` on every rank (other ranks may pass None).
        It is checked before anything changes; if any rank refuses it, every rank raises."""
        loaded = self.comm.bcast(state_dict if self.comm.rank == 0 else None, root=0)
        error: BaseException | None = None
        try:
            if loaded is None:
                raise TypeError("rank 0 passed no state dict; load_state_dict loads rank 0's on every rank")
            if isinstance(loaded, Mapping) and "zero_shard" in loaded:
                raise ValueError("this is one shard of a ZeroRedundancyOptimizer; load a consolidated state dict "
                                 "(ZeroRedundancyOptimizer.consolidated_state_dict)")
            refuse_pending(loaded)
            self.optimizer.load_state_dict(loaded)
        except (TypeError, ValueError) as caught:
            error = caught
        raise_together(self.comm, error, "DistributedOptimizer.load_state_dict")

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        clip = "" if self._max_grad_norm is None else f", max_grad_norm={self._max_grad_norm}"
        return (f"DistributedOptimizer(rank {self.comm.rank} of {self.comm.size}, reduction={self.reduction!r}"
                f"{clip}, threads={self.num_threads},\n{inner}\n)")
