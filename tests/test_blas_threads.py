"""fo.blas_threads: NumPy's BLAS on at most n threads inside the block, as it was outside."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastoptim as fo


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_the_block_runs_on_one_blas_thread_and_the_setting_comes_back():
    np.ones((64, 64)) @ np.ones((64, 64))  # loads NumPy's BLAS
    before = _blas_threads()
    assert before, "NumPy's BLAS is not visible to threadpoolctl"
    with fo.blas_threads(1):
        assert _blas_threads() == [1] * len(before)
        inside = np.ones((64, 64)) @ np.ones((64, 64))
    assert _blas_threads() == before
    assert inside[0, 0] == 64


def test_none_leaves_blas_alone():
    before = _blas_threads()
    with fo.blas_threads(None):
        assert _blas_threads() == before


@pytest.mark.parametrize(("bad", "error", "message"), [
    (0, ValueError, "n must be >= 1"), (-2, ValueError, "n must be >= 1"), (1.0, TypeError, "n must be an int"),
    (True, TypeError, "n must be an int"), ("1", TypeError, "n must be an int")])
def test_bad_counts_are_refused(bad, error, message):
    before = _blas_threads()
    with pytest.raises(error, match=message):
        with fo.blas_threads(bad):
            pass
    assert _blas_threads() == before
