"""Which elements travel in which message, and which rank owns them: pure arithmetic, no MPI.

Each dtype's parameters are laid end to end in their order (each array in its memory order)
and cut into buckets of at most ``cap`` bytes: arrays under ``DIRECT_BYTES`` (256 KiB) share
buckets, packed into one flat buffer (one message instead of many); larger arrays are sent
from where they lie, never copied, in chunks of at most ``cap``.
Every bucket is one message; inside it rank 0's elements come first, then rank 1's, and so
on, so that a reduce-scatter hands each rank its part and an allgather puts the parts back.

Two ways to own elements:

- element-wise rules: every bucket is split evenly (to 16 elements) among the ranks, so
  every message is balanced and each rank owns 1/N of every dtype; with 8-bit state, split
  points within an array fall on its blocks of 256 elements (``block``), so every block is one
  rank's;
- rules that read whole arrays (LAMB's and LARS's per-array norms): each array belongs to
  one rank, chosen greedily (largest first, to the least loaded rank, lowest rank on ties),
  and each bucket lists its arrays by owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Bucket", "Layout", "Piece", "Segment", "plan"]

ALIGN = 16  # split points between ranks fall on multiples of 16 elements of a bucket
# Arrays from 256 KiB are sent in place: copying them into a bucket and back costs more than
# the latency of their own message (a few microseconds in shared memory, tens on a network).
DIRECT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Segment:
    """Elements [start, stop) of parameter `param` (memory order) at `offset` in its bucket."""

    param: int
    start: int
    stop: int
    offset: int


@dataclass(frozen=True)
class Bucket:
    """One message: segments of one dtype, rank 0's part first; counts/displs per rank."""

    dtype: np.dtype
    segments: tuple[Segment, ...]
    counts: tuple[int, ...]
    displs: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.displs[-1] + self.counts[-1]

    @property
    def direct(self) -> bool:
        """A contiguous range of one parameter: communicated in place, without packing."""
        return len(self.segments) == 1

    def part(self, rank: int) -> list[Segment]:
        """The segments (cut to fit) that make up `rank`'s part of the bucket."""
        lo, hi = self.displs[rank], self.displs[rank] + self.counts[rank]
        out = []
        for s in self.segments:
            a, b = max(lo, s.offset), min(hi, s.offset + s.stop - s.start)
            if a < b:
                out.append(Segment(s.param, s.start + a - s.offset, s.start + b - s.offset, a))
        return out


@dataclass(frozen=True)
class Piece:
    """Elements [start, stop) of parameter `param` that a rank owns, at `shard_offset` in its
    gradient shard of that dtype."""

    param: int
    start: int
    stop: int
    shard_offset: int


@dataclass(frozen=True)
class Layout:
    world_size: int
    whole_arrays: bool
    buckets: tuple[Bucket, ...]
    _fingerprint: str = field(default="", compare=False)

    def dtypes(self) -> list[np.dtype]:
        return sorted({b.dtype for b in self.buckets}, key=str)

    def shard_offsets(self, rank: int) -> list[int]:
        """Where each bucket's part for `rank` starts in that rank's shard of the bucket's dtype."""
        filled: dict[np.dtype, int] = {}
        offsets = []
        for b in self.buckets:
            offsets.append(filled.get(b.dtype, 0))
            filled[b.dtype] = offsets[-1] + b.counts[rank]
        return offsets

    def shard_sizes(self, rank: int) -> dict[np.dtype, int]:
        sizes = {d: 0 for d in self.dtypes()}
        for b in self.buckets:
            sizes[b.dtype] += b.counts[rank]
        return sizes

    def pieces(self, rank: int) -> list[Piece]:
        """What `rank` owns, sorted by parameter then start; ranges of one parameter that are
        adjacent both in the parameter and in the shard are merged (so with whole arrays each
        owned parameter is one piece)."""
        out: list[Piece] = []
        for bucket, offset in zip(self.buckets, self.shard_offsets(rank)):
            base = bucket.displs[rank]
            for s in bucket.part(rank):
                out.append(Piece(s.param, s.start, s.stop, offset + s.offset - base))
        out.sort(key=lambda p: (p.param, p.start))
        merged: list[Piece] = []
        for p in out:
            last = merged[-1] if merged else None
            if (last is not None and last.param == p.param and last.stop == p.start
                    and last.shard_offset + (last.stop - last.start) == p.shard_offset):
                merged[-1] = Piece(p.param, last.start, p.stop, last.shard_offset)
            else:
                merged.append(p)
        return merged

    def fingerprint(self) -> str:
        """A short digest of the layout: shard state dicts load only into the same layout."""
        return self._fingerprint


def _owners(nbytes: Sequence[int], world: int) -> list[int]:
    """Whole arrays to ranks: largest first, each to the least loaded rank (lowest on ties)."""
    load = [0] * world
    owner = [0] * len(nbytes)
    for i in sorted(range(len(nbytes)), key=lambda i: (-nbytes[i], i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += nbytes[i]
    return owner


def _even(size: int, world: int) -> list[int]:
    """Split points 0 = b_0 <= ... <= b_N = size, balanced, inner ones on multiples of ALIGN."""
    bounds = [0] + [(r * size // world) // ALIGN * ALIGN for r in range(1, world)] + [size]
    return bounds


def _on_block(bound: int, ranges: Sequence[tuple[int, int, int]], block: int) -> int:
    """A split point of a bucket moved up to the next multiple of `block` elements of the
    parameter it falls in (or that parameter's end)."""
    offset = 0
    for _, a, b in ranges:
        if offset <= bound < offset + b - a:
            return offset + min(b, -(-(a + bound - offset) // block) * block) - a
        offset += b - a
    return bound


def plan(sizes: Sequence[int], dtypes: Sequence[np.dtype], world: int, cap_bytes: int,
         whole_arrays: bool, direct_bytes: int = DIRECT_BYTES, block: int = ALIGN) -> Layout:
    """Cut parameters of the given sizes and dtypes into buckets and split them among `world`
    ranks. `cap_bytes` bounds a bucket (at least one element); arrays from `direct_bytes`
    (or from the cap, if smaller) are buckets of their own, in chunks of at most the cap.
    Every piece of an array starts on a multiple of `block` of its elements (a multiple of ALIGN)."""
    if len(sizes) != len(dtypes):
        raise ValueError("sizes and dtypes differ in length")
    owner = _owners([int(n) * np.dtype(d).itemsize for n, d in zip(sizes, dtypes)], world) if whole_arrays else []
    buckets: list[Bucket] = []

    def emit(dtype: np.dtype, ranges: list[tuple[int, int, int]]) -> None:
        if whole_arrays:
            ranges = sorted(ranges, key=lambda r: owner[r[0]])  # stable: parameter order within a rank
            counts = [0] * world
            for p, a, b in ranges:
                counts[owner[p]] += b - a
        else:
            total = sum(b - a for _, a, b in ranges)
            bounds = _even(total, world)
            if block != ALIGN:
                bounds = [_on_block(x, ranges, block) for x in bounds]
            counts = [bounds[r + 1] - bounds[r] for r in range(world)]
        segments, offset = [], 0
        for p, a, b in ranges:
            segments.append(Segment(p, a, b, offset))
            offset += b - a
        displs = [0] * world
        for r in range(1, world):
            displs[r] = displs[r - 1] + counts[r - 1]
        buckets.append(Bucket(dtype, tuple(segments), tuple(counts), tuple(displs)))

    for dtype in sorted({np.dtype(d) for d in dtypes}, key=str):
        cap = max(1, int(cap_bytes) // dtype.itemsize)
        direct = max(1, min(cap, int(direct_bytes) // dtype.itemsize))
        current: list[tuple[int, int, int]] = []
        filled = 0
        for p, (n, d) in enumerate(zip(sizes, dtypes)):
            n = int(n)
            if np.dtype(d) != dtype or n == 0:
                continue
            if n >= direct:  # a large array: chunks of its own, each communicated in place
                if current:
                    emit(dtype, current)
                    current, filled = [], 0
                chunks = -(-n // cap)
                bounds = [0] + [(k * n // chunks) // block * block for k in range(1, chunks)] + [n]
                for a, b in zip(bounds, bounds[1:]):
                    if b > a:
                        emit(dtype, [(p, a, b)])
                continue
            if filled + n > cap:
                emit(dtype, current)
                current, filled = [], 0
            current.append((p, 0, n))
            filled += n
        if current:
            emit(dtype, current)
    digest = hashlib.sha256(repr((world, whole_arrays, [(str(b.dtype), b.segments, b.counts) for b in buckets]))
                            .encode()).hexdigest()[:16]
    return Layout(world, whole_arrays, tuple(buckets), digest)
