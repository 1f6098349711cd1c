from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # registry.py and reference.py

import fastoptim as fo  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    """Tests that switch targets, threads, prefetching or the thread policy leave the process as
    they found it."""
    target, threads, prefetch_above = fo.get_target(), fo.get_num_threads(), fo.get_prefetch_above()
    policy = fo.get_thread_policy()
    yield
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    fo.set_thread_policy(**policy)

