"""The messages of a step: reduce-scatter the gradients into per-rank shards, allgather the
results back, the global gradient norm, and the broadcast that makes ranks start equal.

Why no Allreduce: MPI does not promise that an Allreduce leaves the same bits on every rank
(only that each rank gets *a* sum), and ranks whose gradients differ in the last bit drift
apart. Here every element of a sum is computed once, by the rank that owns it, and then
copied to the others by an allgather: identical bits on every rank by construction, for the
same traffic as a ring or Rabenseifner Allreduce (which is a reduce-scatter and an allgather).

The owner sums either in rank order, ``((g_0 + g_1) + g_2) + ...``, after an Alltoallv brings
it every rank's part (``reduction="rank_order"``, the default: the same bits whatever the MPI
library or its algorithm), or with MPI's ``Reduce_scatter`` (``reduction="mpi"``: MPI's order).
Either way the sum is then divided by the number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from .._validation import is_bfloat16_array
from ._common import flat, mpi
from ._layout import Bucket, Layout, plan

__all__ = ["Exchange", "GradMeasure", "broadcast_arrays"]


class GradMeasure:
    """Σ u² over the parts of the gradients a rank averaged (u = g·mult), and whether each of
    their elements was finite: the native pass of the optimizers' own norm, bucket by bucket in
    bucket order, so that both wrappers measure the same parts with the same bits."""

    def __init__(self, mult: float) -> None:
        self.mult, self.sum_of_squares, self.finite = mult, 0.0, True

    def add(self, part: np.ndarray) -> None:
        value, finite = _core.measure_arrays([part], 0, self.mult)
        self.sum_of_squares += value
        self.finite = self.finite and finite


class Exchange:
    """One layout's messages on one communicator, with the buffers they need: a packing
    buffer per dtype for buckets of small arrays, the receive buffer of the reduction and,
    with ``shard=True`` (ZeRO), this rank's gradient shard per dtype (the averaged gradient of
    the elements it owns)."""

    def __init__(self, comm: Any, layout: Layout, reduction: str, *, shard: bool) -> None:
        self.comm, self.layout, self.reduction = comm, layout, reduction
        self.rank, self.size = comm.rank, comm.size
        self._MPI = mpi()
        buckets = layout.buckets
        self.shard: dict[np.dtype, np.ndarray] = {}
        self._mine: list[np.ndarray] = []
        if shard:
            self.shard = {d: np.zeros(n, d) for d, n in layout.shard_sizes(self.rank).items()}
            self._mine = [self.shard[b.dtype][o:o + b.counts[self.rank]]
                          for b, o in zip(buckets, layout.shard_offsets(self.rank))]
        self._pack: dict[np.dtype, np.ndarray] = {}
        self._scratch: dict[np.dtype, np.ndarray] = {}
        parts = self.size - 1 if reduction == "rank_order" else 1
        for d in layout.dtypes():
            packed = [b.size for b in buckets if b.dtype == d and not b.direct]
            if packed:
                self._pack[d] = np.empty(max(packed), d)
            if self.size > 1 and (reduction == "rank_order" or not shard):
                self._scratch[d] = np.empty(parts * max(b.counts[self.rank] for b in buckets if b.dtype == d), d)
        # rank order: every rank sends the others their parts, and nothing to itself
        self._send = [tuple(0 if r == self.rank else c for r, c in enumerate(b.counts)) for b in buckets]
        self._recv = [self._receive_spec(b.counts[self.rank]) for b in buckets]
        self._param_plan: list[Any] = []

    def _receive_spec(self, count: int) -> tuple[list[int], list[int]]:
        """`count` elements from every other rank, in rank order, none from this one."""
        counts = [0 if r == self.rank else count for r in range(self.size)]
        displs = [count * (r - (r > self.rank)) for r in range(self.size)]
        return counts, displs

    def nbytes(self) -> int:
        """Bytes of the buffers this exchange holds (shards, packing, receive)."""
        return sum(a.nbytes for group in (self.shard, self._pack, self._scratch) for a in group.values())

    # ---- gradients in ---------------------------------------------------------------------
    def _source(self, bucket: Bucket, flats: Sequence[np.ndarray]) -> np.ndarray:
        """The bucket's gradients in one buffer: where they lie, or packed."""
        if bucket.direct:
            s = bucket.segments[0]
            return flats[s.param][s.start:s.stop]
        source = self._pack[bucket.dtype][:bucket.size]
        for s in bucket.segments:
            np.copyto(source[s.offset:s.offset + s.stop - s.start], flats[s.param][s.start:s.stop])
        return source

    def _reduce(self, bucket: Bucket, source: np.ndarray, mine: np.ndarray, send: Any, recv: Any,
                in_place: bool) -> None:
        """The average over ranks of this rank's part of `source`, into `mine`: a buffer of
        its own, or (`in_place`) that part of `source` itself."""
        n, c = self.size, bucket.counts[self.rank]
        if n == 1:
            if not in_place:
                np.copyto(mine, source)
            return
        if self.reduction == "mpi":
            if in_place:
                summed = self._scratch[bucket.dtype][:c]
                self.comm.Reduce_scatter(source, summed, recvcounts=bucket.counts, op=self._MPI.SUM)
                np.copyto(mine, summed)
            else:
                self.comm.Reduce_scatter(source, mine, recvcounts=bucket.counts, op=self._MPI.SUM)
        else:
            parts = self._scratch[bucket.dtype][:c * (n - 1)]
            self.comm.Alltoallv([source, (send, bucket.displs)], [parts, recv])
            if c:
                lo = bucket.displs[self.rank]
                terms = [source[lo:lo + c] if r == self.rank else parts[c * (r - (r > self.rank)):][:c]
                         for r in range(n)]
                if in_place and self.rank >= 2:  # `mine` is a term still to add: sum elsewhere first
                    total = parts[:c]  # rank 0's term, the first one consumed
                    np.add(terms[0], terms[1], out=total)
                    for term in terms[2:-1]:
                        np.add(total, term, out=total)
                    np.add(total, terms[-1], out=mine)
                else:
                    np.add(terms[0], terms[1], out=mine)
                    for term in terms[2:]:
                        np.add(mine, term, out=mine)
        np.divide(mine, n, out=mine)

    def reduce_scatter(self, flats: Sequence[np.ndarray]) -> None:
        """ZeRO: average the gradients (1-D views, parameter order) across ranks into the
        shards; the gradients are only read."""
        for bucket, mine, send, recv in zip(self.layout.buckets, self._mine, self._send, self._recv):
            self._reduce(bucket, self._source(bucket, flats), mine, send, recv, in_place=False)

    def allreduce(self, flats: Sequence[np.ndarray], measure: GradMeasure | None) -> None:
        """Data parallel: average the gradients across ranks in place, bucket by bucket (each
        rank averages its part of the bucket, then an allgather shares the parts), adding
        the parts this rank averaged to `measure`."""
        in_place = self._MPI.IN_PLACE
        for bucket, send, recv in zip(self.layout.buckets, self._send, self._recv):
            source = self._source(bucket, flats)
            lo = bucket.displs[self.rank]
            mine = source[lo:lo + bucket.counts[self.rank]]
            self._reduce(bucket, source, mine, send, recv, in_place=True)
            if measure is not None:
                measure.add(mine)
            if self.size > 1:
                self.comm.Allgatherv(in_place, [source, (bucket.counts, bucket.displs)])
            if not bucket.direct:
                for s in bucket.segments:
                    np.copyto(flats[s.param][s.start:s.stop], source[s.offset:s.offset + s.stop - s.start])

    # ---- the norm and clipping ------------------------------------------------------------
    def measure_shard(self, measure: GradMeasure) -> None:
        """Add this rank's shard to `measure`, bucket by bucket (as :meth:`allreduce` does)."""
        for mine in self._mine:
            measure.add(mine)

    def global_measure(self, measure: GradMeasure) -> tuple[float, bool]:
        """The 2-norm and the finiteness of every rank's parts together: gathered (one Allgather
        of two doubles) and added in rank order, so that every rank gets the same bits and the
        same verdict."""
        table = np.empty((self.size, 2), np.float64)
        self.comm.Allgather(np.array([measure.sum_of_squares, measure.finite], np.float64), table)
        total = 0.0
        for value in table[:, 0].tolist():
            total += value
        return math.sqrt(total), bool(table[:, 1].all())

    # ---- parameters out -------------------------------------------------------------------
    def bind_params(self, flats: Sequence[np.ndarray]) -> None:
        """Prepare :meth:`allgather_params` for these parameters (1-D views, kept)."""
        self._param_plan = []
        for bucket in self.layout.buckets:
            if bucket.direct:
                s = bucket.segments[0]
                self._param_plan.append((flats[s.param][s.start:s.stop], [], []))
                continue
            buffer = self._pack[bucket.dtype][:bucket.size]
            mine = bucket.part(self.rank)
            pairs = [(flats[s.param][s.start:s.stop], buffer[s.offset:s.offset + s.stop - s.start]) for s in mine]
            others = [s for r in range(self.size) if r != self.rank for s in bucket.part(r)]
            back = [(buffer[s.offset:s.offset + s.stop - s.start], flats[s.param][s.start:s.stop]) for s in others]
            self._param_plan.append((buffer, pairs, back))

    def allgather_params(self) -> None:
        """Every rank has updated the parameter elements it owns in place: copy them to all."""
        in_place = self._MPI.IN_PLACE
        for bucket, (buffer, pairs, back) in zip(self.layout.buckets, self._param_plan):
            for source, target in pairs:
                np.copyto(target, source)
            if self.size > 1:
                self.comm.Allgatherv(in_place, [buffer, (bucket.counts, bucket.displs)])
            for source, target in back:
                np.copyto(target, source)


def broadcast_arrays(comm: Any, arrays: Sequence[np.ndarray], cap_bytes: int, root: int = 0) -> None:
    """Overwrite `arrays` (contiguous, the same shapes and dtypes on every rank) with root's,
    in buckets of at most `cap_bytes`: small arrays packed together, large ones in place."""
    if comm.size == 1 or not arrays:
        return
    # bfloat16 state travels as its bit patterns: MPI has no bfloat16
    flats = [f.view(np.uint16) if is_bfloat16_array(f) else f for f in map(flat, arrays)]
    layout = plan([a.size for a in flats], [a.dtype for a in flats], 1, cap_bytes, whole_arrays=False)
    packed = {d: max((b.size for b in layout.buckets if b.dtype == d and not b.direct), default=0)
              for d in layout.dtypes()}
    buffers = {d: np.empty(n, d) for d, n in packed.items() if n}
    for bucket in layout.buckets:
        if bucket.direct:
            s = bucket.segments[0]
            comm.Bcast(flats[s.param][s.start:s.stop], root=root)
            continue
        buffer = buffers[bucket.dtype][:bucket.size]
        if comm.rank == root:
            for s in bucket.segments:
                np.copyto(buffer[s.offset:s.offset + s.stop - s.start], flats[s.param][s.start:s.stop])
        comm.Bcast(buffer, root=root)
        if comm.rank != root:
            for s in bucket.segments:
                np.copyto(flats[s.param][s.start:s.stop], buffer[s.offset:s.offset + s.stop - s.start])
