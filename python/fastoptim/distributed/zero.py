"""ZeRO stage 1: the optimizer state is partitioned across ranks (Rajbhandari et al., 2020)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._extras import check_saved_extras
from .._forwarding import forwarded
from .._memory import state_like
from .._param_groups import Group, raw_groups, read_group
from .._step_options import StepInfo, check_grad_scale
from .._validation import check_disjoint
from ..lookahead import Lookahead
from ..optimizer import Optimizer
from ..schedule_free import ScheduleFree
from ._base import DistributedBase
from ._common import check_options, compare_signatures, flat, node_info, raise_together, resolve_comm, set_rank_threads
from ._exchange import Exchange, GradMeasure, broadcast_arrays
from ._layout import ALIGN, Layout, plan
from ._signature import core_of, group_items
from ._state import Merger, Piece, split

__all__ = ["ZeroRedundancyOptimizer"]

_TAG = 0x5A31  # point-to-point messages of checkpoints


def _user_groups(params: Any) -> list[Group]:
    """Every group of `params`, read as the optimizers read them; no two arrays may overlap."""
    groups: list[Group] = []
    for raw in raw_groups(params):
        groups.append(read_group(raw, [n for g in groups for n in g.names]))
    check_disjoint([f"params[{n!r}]" for g in groups for n in g.names], [a for g in groups for a in g.arrays])
    return groups


def _probe(optimizer_class: Callable[..., Any], defaults: Mapping[str, Any]) -> tuple[bool, int]:
    """From a one-element probe: whether the rule reads whole arrays (per-array norms: LAMB,
    LARS), and the elements the pieces of an array must start on (8-bit state's blocks)."""
    probe = optimizer_class([np.zeros(1, np.float32)], **defaults)  # float32: every state_dtype takes it
    core = probe.optimizer if isinstance(probe, Lookahead) else probe
    if not isinstance(core, Optimizer):
        raise TypeError(f"optimizer_class must build a fastoptim optimizer, got {type(probe).__name__}")
    if isinstance(core, ScheduleFree):
        raise TypeError(f"optimizer_class: {type(core).__name__}'s train() and eval() move every parameter toward "
                        "its state z, which ZeroRedundancyOptimizer shards; wrap it in DistributedOptimizer, whose "
                        "train() and eval() run alike on every rank")
    rules = _core.rules()
    whole = core._rule not in rules or int(rules[core._rule]["norms"]) > 0
    return whole, _core.CODE_BLOCK if core.state_dtype == "int8" else ALIGN


class ZeroRedundancyOptimizer(DistributedBase):
    r"""ZeRO stage 1 (Rajbhandari et al., SC 2020) over MPI: each of the N ranks keeps and
    updates the optimizer state of only its 1/N of the parameters' elements.

    The signature is torch's ``ZeroRedundancyOptimizer(params, optimizer_class, **defaults)``
    with `comm` for `process_group`. Every rank passes the whole model's parameters; they are
    broadcast from rank 0 at construction. A step

    1. reduce-scatters the gradients: each rank receives the average
       :math:`\bigl(((g_0 + g_1) + \dots + g_{N-1}\bigr) / N` of the elements it owns;
    2. clips to a global norm if asked, folded into the update, and skips a step with a
       non-finite gradient on every rank if the local optimizer's ``skip_nonfinite`` says so
       (two scalars gathered from each rank);
    3. steps a local ``optimizer_class`` whose parameters are the owned elements, as views
       into your arrays, so that it updates them in place;
    4. allgathers the updated elements into every rank's arrays.

    The parameters are split in buckets of at most `bucket_cap_mb`; for element-wise rules
    every bucket is divided evenly, so each rank's state is 1/N of the whole (to 16
    elements a bucket), and the results are the unsharded optimizer's to the last bit (given
    the same averaged gradient), on every rank. Rules that read whole arrays (LAMB and LARS,
    whose trust ratios use per-array norms) are given whole arrays instead: each array
    belongs to one rank, assigned greedily by size, so their norms are the unsharded ones
    and the results again the same bits; the state per rank is then balanced only to the
    size of the largest array.

    Your gradient arrays are read, never written. ``param_groups`` are the local optimizer's
    (its ``params`` are this rank's pieces): edit hyper-parameters, or drive them with a
    scheduler, alike on every rank.

    Checkpoints: :meth:`state_dict` is this rank's shard (it loads back under the same world
    size); :meth:`consolidated_state_dict` gathers the whole state on one rank in the format
    of ``optimizer_class(params).state_dict()``, which the plain optimizer,
    :class:`DistributedOptimizer`, or a ZeroRedundancyOptimizer of any world size loads.

    Args:
        params: the parameters, as the optimizers take them (list, dict, pairs or groups).
        optimizer_class: a fastoptim optimizer class (``fo.AdamW``, ``fo.Ranger``, ...) or any
            callable that builds one from ``(params, **defaults)``.
        comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``).
        max_grad_norm, bucket_cap_mb, reduction, num_threads: as :class:`DistributedOptimizer`.
        **defaults: the hyper-parameters, passed to `optimizer_class`; a ``max_grad_norm`` or
            ``skip_nonfinite`` among them acts on the global gradient, as the wrapper's does.
    """

    def __init__(self, params: Any, optimizer_class: Callable[..., Any], comm: Any = None, *,
                 max_grad_norm: float | None = None, bucket_cap_mb: float = 25.0, reduction: str = "rank_order",
                 num_threads: int | None = None, **defaults: Any) -> None:
        comm = resolve_comm(comm)
        action = "ZeroRedundancyOptimizer()"
        error: BaseException | None = None
        groups: list[Group] = []
        options: tuple[Any, ...] = (None, 1, "rank_order", None)
        try:
            if not callable(optimizer_class):
                raise TypeError(f"optimizer_class must be a fastoptim optimizer class, got {optimizer_class!r}")
            options = check_options(max_grad_norm, bucket_cap_mb, reduction, num_threads)
            groups = _user_groups(params)
            self._refuse_bfloat16([n for _, names, _ in groups for n in names],
                            [a for _, _, arrays in groups for a in arrays], action)
        except (TypeError, ValueError) as caught:
            error = caught
        raise_together(comm, error, action)
        self._max_grad_norm: float | None
        self._max_grad_norm, self._cap, self.reduction, threads = options
        self.comm = comm
        self.optimizer_class = optimizer_class
        self.grad_norm: float | None = None
        self._groups = [names for _, names, _ in groups]
        self._names: list[Hashable] = [n for names in self._groups for n in names]
        self._params: list[np.ndarray] = [a for _, _, arrays in groups for a in arrays]
        self._group_of = [i for i, names in enumerate(self._groups) for _ in names]

        name = getattr(optimizer_class, "__qualname__", type(optimizer_class).__qualname__)
        items = [("optimizer_class", name), ("defaults", repr(sorted(defaults.items())))] + group_items(groups)
        items.append(("options (max_grad_norm, bucket bytes, reduction)",
                      repr((self._max_grad_norm, self._cap, self.reduction))))
        gathered = comm.allgather((items, node_info()))
        compare_signatures([g[0] for g in gathered], action)
        self.num_threads = set_rank_threads([g[1] for g in gathered], comm.rank, threads)
        broadcast_arrays(comm, self._params, self._cap)

        whole, block = False, ALIGN
        try:
            whole, block = _probe(optimizer_class, defaults)
        except (TypeError, ValueError) as caught:
            error = caught
        raise_together(comm, error, action)
        self.layout: Layout = plan([p.size for p in self._params], [p.dtype for p in self._params], comm.size,
                                   self._cap, whole_arrays=whole, block=block)
        self._exchange = Exchange(comm, self.layout, self.reduction, shard=True)
        self._flats = [flat(p) for p in self._params]
        self._exchange.bind_params(self._flats)

        self._pieces = self._pieces_of(comm.rank)
        self._local_params = [p for group in self._pieces for _, p, _, _ in group]  # the parameter of each piece
        self._accumulated: list[np.ndarray] | None = None  # whole-model sums, allocated at the first accumulate
        self._pending = 0
        self._touched: set[int] = set()
        self._zeros: dict[int, np.ndarray] = {}
        local_groups = []
        self._local_grads: list[np.ndarray] = []
        shard_offsets = {(p.param, p.start): p.shard_offset for p in self.layout.pieces(comm.rank)}
        for (hyper, _, _), group in zip(groups, self._pieces):
            local_groups.append({**hyper, "params": [self._flats[p][a:b] for _, p, a, b in group],
                                 "param_names": [key for key, *_ in group]})
            for _, p, a, b in group:
                dtype = self._params[p].dtype
                shard = self._exchange.shard.get(dtype, np.empty(0, dtype))
                offset = shard_offsets.get((p, a), 0)
                self._local_grads.append(shard[offset:offset + b - a])
        self.optimizer: Any = None
        try:
            self.optimizer = optimizer_class(local_groups, **defaults)
            # Stochastic rounding draws by each piece's whole parameter and element, as a plain
            # optimizer's; a piece of an array with 8-bit state has 8-bit state.
            self.optimizer._set_counters([p for group in self._pieces for _, p, _, _ in group],
                                         [start for group in self._pieces for _, _, start, _ in group],
                                         [self._params[p].size for group in self._pieces for _, p, _, _ in group])
            self._clip_norm()  # refuses max_grad_norm set both here and in `defaults`
        except (TypeError, ValueError) as caught:
            error = caught
        raise_together(comm, error, action)

    def _pieces_of(self, rank: int) -> list[list[Piece]]:
        """What `rank`'s local optimizer holds, per group: ``((name, start, stop), param, start,
        stop)``; rank 0 also holds an empty piece of each array without elements (so that its
        steps are counted, as a parameter's own), and a group where the rank owns nothing
        gets an empty piece of its first array."""
        by_group: list[list[Piece]] = [[] for _ in self._groups]
        for p in self.layout.pieces(rank):
            key = (self._names[p.param], p.start, p.stop)
            by_group[self._group_of[p.param]].append((key, p.param, p.start, p.stop))
        if rank == 0:  # an array without elements is in no bucket; rank 0 keeps its clock
            for index, param in enumerate(self._params):
                if param.size == 0:
                    by_group[self._group_of[index]].append(((self._names[index], 0, 0), index, 0, 0))
        first = 0
        for index, names in enumerate(self._groups):
            if not by_group[index]:
                by_group[index].append(((self._names[first], 0, 0), first, 0, 0))
            first += len(names)
        return by_group

    # ---- what the local optimizer shows -----------------------------------------------------
    param_groups = forwarded("param_groups", "The local optimizer's groups (one per group of `params`; ``params`` "
                             "holds this rank's pieces). Edit hyper-parameters, or drive them with a scheduler, "
                             "alike on every rank.")
    defaults = forwarded("defaults")
    state = forwarded("state", "This rank's state, keyed by piece ``(name, start, stop)``.")
    ema = forwarded("ema", "This rank's share of the EMA of the weights (``ema_decay`` among the defaults), keyed "
                    "by piece ``(name, start, stop)``, or None.")

    @contextlib.contextmanager
    def swap_ema(self) -> Iterator[None]:
        """Collective: within the block every rank's parameters hold the whole EMA (each rank
        swaps its share in, then the shares are allgathered as a step's are); on exit the
        weights come back the same way."""
        swap = self.optimizer.swap_ema()
        error: BaseException | None = None
        try:
            swap.__enter__()
        except (TypeError, ValueError, RuntimeError) as caught:
            error = caught
        try:
            raise_together(self.comm, error, "ZeroRedundancyOptimizer.swap_ema")
        except BaseException:
            if error is None:  # this rank swapped: swap back before raising with the others
                swap.__exit__(None, None, None)
            raise
        try:
            self._exchange.allgather_params()
            yield
        finally:
            swap.__exit__(None, None, None)
            self._exchange.allgather_params()

    @property
    def pending(self) -> int:
        """Micro-batches accumulated on this rank since the last step."""
        return self._pending

    def accumulate(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None], *,
                   grad_scale: float | None = None) -> None:
        """Add a micro-batch's gradients (each read as ``g / grad_scale``; None adds nothing) into
        this rank's whole-model buffers, with no message: the next :meth:`step` reduce-scatters
        the sums once. Every rank must accumulate alike, which the step checks. On any error
        nothing changes."""
        mult = check_grad_scale(grad_scale)
        ordered = _core.check_grads(grads, self._names, self._params, False)
        if self._accumulated is None:
            self._accumulated = [state_like(p) for p in self._params]
        for index, (buffer, grad) in enumerate(zip(self._accumulated, ordered)):
            if grad is None:
                continue
            buffer += grad if mult == 1.0 else grad * buffer.dtype.type(mult)  # the native accumulation's bits
            self._touched.add(index)
        self._pending += 1

    def _discard_accumulated(self) -> None:
        for buffer in self._accumulated or []:
            buffer.fill(0)
        self._pending = 0
        self._touched = set()

    def memory(self) -> dict[str, int]:
        """This rank's optimizer memory in bytes: ``state`` (its share of the state arrays) and
        ``buffers`` (its gradient shard and the message buffers)."""
        state = sum(a.nbytes for slots in self.optimizer.state.values() for a in slots.values())
        return {"state": state, "buffers": self._exchange.nbytes()}

    # ---- stepping ---------------------------------------------------------------------------
    def step(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None] | None = None, *,
             grad_scale: float | None = None) -> StepInfo:
        """Average `grads` across ranks, update the owned elements, share them with all ranks.

        `grads` is a dict keyed like the parameters or a list in their order; each gradient
        must have its parameter's dtype, shape and memory order, or be None on every rank (the
        parameter is left alone). It is only read. After :meth:`accumulate`, the step adds
        `grads` (if any) to this rank's sums and reduce-scatters the sums instead. `grad_scale`
        and the result are as :meth:`fastoptim.Optimizer.step`'s; the norm and the finiteness
        that ``max_grad_norm`` and the local optimizer's ``skip_nonfinite`` need are those of
        every rank's shard together, so that every rank clips and skips alike."""
        touched = tuple(sorted(self._touched)) if self._pending else None
        ordered, mult, clip = self._checked_grads(grads, "ZeroRedundancyOptimizer.step", grad_scale,
                                                  writable=False, touched=touched,
                                                  local_check=lambda _: core_of(self.optimizer)._check_step(None))
        if touched is not None:
            if grads is not None:
                self.accumulate(ordered, grad_scale=grad_scale)
            assert self._accumulated is not None
            arrays, mult = list(self._accumulated), 1.0
            left_out = {i for i in range(len(self._params)) if i not in self._touched}
        else:
            arrays = [self._zeros_for(i) if g is None else g for i, g in enumerate(ordered)]
            left_out = {i for i, g in enumerate(ordered) if g is None}
        self._exchange.reduce_scatter([flat(a) for a in arrays])
        local = [None if p in left_out else g for p, g in zip(self._local_params, self._local_grads)]
        if clip is None and not self.optimizer.skip_nonfinite:
            info: StepInfo = self.optimizer._step(local, mult, None, False)
        else:
            measure = GradMeasure(mult)
            self._exchange.measure_shard(measure)
            info = self._step_measured(local, mult, clip, measure)
        if touched is not None:
            self._discard_accumulated()  # the step (or its skip) consumed them
        if not info.skipped:  # else no rank changed anything: nothing to share
            self._exchange.allgather_params()
        return info

    def _zeros_for(self, index: int) -> np.ndarray:
        """Zeros in place of a gradient every rank left None: the buckets keep their layout."""
        zeros = self._zeros.get(index)
        if zeros is None:
            zeros = self._zeros[index] = np.zeros_like(self._params[index])
        return zeros

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This rank's shard: loads back into the same rank of the same layout (world size,
        parameters, bucket size). To change the world size, use :meth:`consolidated_state_dict`."""
        meta = {"world_size": self.comm.size, "rank": self.comm.rank, "layout": self.layout.fingerprint()}
        shard = {"zero_shard": meta, "state_dict": self.optimizer.state_dict()}
        if self._pending and self._accumulated is not None:  # this rank's own sums, not yet reduced
            shard["accumulated"] = {"micro_batches": self._pending, "arrays": {
                self._names[i]: self._accumulated[i].copy(order="K") for i in sorted(self._touched)}}
        return shard

    def consolidated_state_dict(self, to: int = 0) -> dict[str, Any] | None:
        """Collective: the whole state on rank `to` (None on the others), as
        ``optimizer_class(params).state_dict()`` gives it. Rank `to` receives the shards one
        at a time, so it needs memory for the whole state and one shard."""
        bad = isinstance(to, bool) or not isinstance(to, int) or not 0 <= to < self.comm.size
        targets = self.comm.allgather((None if bad else to, self._pending))
        if any(t[0] != targets[0][0] for t in targets) or targets[0][0] is None:
            raise ValueError(f"consolidated_state_dict: every rank must pass the same rank `to` of the "
                             f"communicator (0 to {self.comm.size - 1}); got {[t[0] for t in targets]}")
        if any(t[1] for t in targets):
            raise ValueError("consolidated_state_dict: gradients accumulated since the last step are each rank's "
                             "own, and a consolidated state dict holds one state for every rank; step first, or "
                             "save each rank's state_dict() shard")
        mine = self.optimizer.state_dict()
        if self.comm.rank != to:
            self.comm.send(mine, dest=to, tag=_TAG)
            return None
        merger = Merger(self._names, self._params, self._groups)
        for rank in range(self.comm.size):
            merger.add(mine if rank == to else self.comm.recv(source=rank, tag=_TAG))
        assert merger.result is not None
        return merger.result

    def load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """Collective. Either every rank passes its own :meth:`state_dict` (same world size and
        layout), or rank 0 passes a consolidated one (from :meth:`consolidated_state_dict`, a
        plain optimizer or :class:`DistributedOptimizer`, saved under any world size) and the
        other ranks pass None (or anything: rank 0's is used); rank 0 sends each rank its share.
        Everything is checked before the state changes; if any rank fails, every rank raises."""
        action = "ZeroRedundancyOptimizer.load_state_dict"
        shard = isinstance(state_dict, Mapping) and "zero_shard" in state_dict
        kinds = self.comm.allgather("shard" if shard else "other")
        error: BaseException | None = None
        if all(k == "shard" for k in kinds):
            assert isinstance(state_dict, Mapping)
            try:
                meta = state_dict["zero_shard"]
                here = {"world_size": self.comm.size, "rank": self.comm.rank, "layout": self.layout.fingerprint()}
                if dict(meta) != here:
                    raise ValueError(f"this shard was saved by rank {meta.get('rank')} of {meta.get('world_size')} "
                                     f"(layout {meta.get('layout')}); this is rank {self.comm.rank} of "
                                     f"{self.comm.size} (layout {here['layout']}): to change the world size, "
                                     "the parameters or the bucket size, load a consolidated state dict")
                accumulated = self._checked_accumulated(state_dict.get("accumulated"))
                self.optimizer.load_state_dict(state_dict["state_dict"])
                self._accumulated, self._pending, self._touched = accumulated
            except (TypeError, ValueError, KeyError) as caught:
                error = caught
            raise_together(self.comm, error, action)
            return
        if kinds[0] == "shard":
            raise ValueError(f"{action}: rank 0 passed a shard but not every rank did: pass every rank its own "
                             "shard, or a consolidated state dict on rank 0")
        shares: list[dict[str, Any]] = []
        if self.comm.rank == 0:
            try:
                if state_dict is None:
                    raise TypeError("rank 0 passed no state dict")
                core = self.optimizer.optimizer if isinstance(self.optimizer, Lookahead) else self.optimizer
                shares = [split(state_dict, self._names, self._params, self._groups, self._pieces_of(r),
                                core._signed_slots) for r in range(self.comm.size)]
            except (TypeError, ValueError) as caught:
                error = caught
        raise_together(self.comm, error, action)
        if self.comm.rank == 0:
            for rank in range(1, self.comm.size):
                self.comm.send(shares[rank], dest=rank, tag=_TAG)
            mine = shares[0]
        else:
            mine = self.comm.recv(source=0, tag=_TAG)
        try:
            self.optimizer.load_state_dict(mine)
            self._discard_accumulated()  # a consolidated state dict holds nothing pending
        except (TypeError, ValueError) as caught:
            error = caught
        raise_together(self.comm, error, action)

    def _checked_accumulated(self, saved: Any) -> tuple[list[np.ndarray] | None, int, set[int]]:
        """A shard's pending sums as new buffers (None: nothing pending), every part checked."""
        if saved is None:  # nothing pending in the shard: this rank's sums are dropped, as a plain optimizer's
            return None, 0, set()
        extras = check_saved_extras({"accumulated": saved}, self._names, self._params, False)
        assert extras.accumulated is not None
        index = {n: i for i, n in enumerate(self._names)}
        return ([extras.accumulated[n] for n in self._names], extras.pending,
                {index[n] for n in extras.touched})

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        clip = "" if self._max_grad_norm is None else f", max_grad_norm={self._max_grad_norm}"
        split_by = "whole arrays" if self.layout.whole_arrays else "elements"
        return (f"ZeroRedundancyOptimizer(rank {self.comm.rank} of {self.comm.size}, split by {split_by}, "
                f"reduction={self.reduction!r}{clip}, threads={self.num_threads}, local optimizer:\n{inner}\n)")
