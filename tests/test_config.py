"""Targets, threads and the configuration report."""

from __future__ import annotations

import os
import sys

import pytest
from child import run_python

import fastoptim as fo


def test_config_reports_version_targets_and_threads():
    cfg = fo.config()
    assert cfg["version"] == fo.__version__
    assert cfg["target"] in cfg["available_targets"]
    assert set(cfg["available_targets"]) <= set(cfg["built_targets"])
    assert cfg["num_threads"] == fo.get_num_threads() >= 1
    assert cfg["prefetch_above"] == fo.get_prefetch_above() >= 0
    assert cfg["last_level_cache"] >= 0
    assert {"sgd", "adam"} <= set(cfg["rules"])


def test_show_config_prints(capsys):
    fo.show_config()
    out = capsys.readouterr().out
    assert "target" in out and fo.get_target() in out
    cache = fo.config()["last_level_cache"]
    assert f"({cache} bytes)" in out and (cache < 1024 or "iB (" in out)  # sizes in KiB/MiB, the count beside


@pytest.mark.parametrize(("count", "text"), [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB (1024 bytes)"),
                                             (1536, "1.5 KiB (1536 bytes)"), (32 * 2**20, "32 MiB (33554432 bytes)"),
                                             (3 * 2**30, "3 GiB (3221225472 bytes)")])
def test_byte_counts_read_as_sizes(count, text):
    from fastoptim._config import readable_bytes
    assert readable_bytes(count) == text


def test_the_widest_supported_target_is_chosen():
    assert fo.get_target() == fo.available_targets()[-1]


def test_threads_can_be_set_and_are_validated(restore_runtime):
    fo.set_num_threads(1)
    assert fo.get_num_threads() == 1
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        fo.set_num_threads(0)
    with pytest.raises(TypeError):
        fo.set_num_threads(1.5)  # type: ignore[arg-type]


def test_prefetch_threshold_is_an_eighth_of_the_last_level_cache():
    run = run_python("import fastoptim as fo; c = fo.config(); print(c['last_level_cache'], c['prefetch_above'])")
    assert run.returncode == 0, run.stderr
    cache, above = map(int, run.stdout.split())
    assert above == (cache // 8 if cache > 0 else 8 << 20)
    l3 = os.sysconf("SC_LEVEL3_CACHE_SIZE") if "SC_LEVEL3_CACHE_SIZE" in os.sysconf_names else 0
    if sys.platform.startswith("linux") and l3 > 0:  # glibc reads it from CPUID, fastoptim from sysfs
        assert cache == l3


def test_prefetch_threshold_can_be_set_and_is_validated(restore_runtime):
    fo.set_prefetch_above(0)
    assert fo.get_prefetch_above() == 0
    fo.set_prefetch_above(2**40)
    for bad, error in [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("8M", TypeError)]:
        with pytest.raises(error, match="nbytes"):
            fo.set_prefetch_above(bad)  # type: ignore[arg-type]
        assert fo.get_prefetch_above() == 2**40


def test_unknown_or_unsupported_target_is_refused(restore_runtime):
    with pytest.raises(ValueError, match="unknown target"):
        fo.set_target("neon9000")
    unsupported = [t for t in fo.config()["built_targets"] if t not in fo.available_targets()]
    for name in unsupported:
        with pytest.raises(ValueError, match="not supported"):
            fo.set_target(name)


@pytest.mark.parametrize("target", fo.available_targets())
def test_fastoptim_isa_forces_a_target(target):
    run = run_python("import fastoptim as fo; print(fo.get_target())", FASTOPTIM_ISA=target)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == target


def test_fastoptim_isa_unknown_fails_the_import_clearly():
    run = run_python("import fastoptim", FASTOPTIM_ISA="avx9000")
    assert run.returncode != 0 and "FASTOPTIM_ISA=avx9000: unknown target" in run.stderr


def test_fastoptim_isa_unsupported_fails_the_import_clearly():
    unsupported = [t for t in fo.config()["built_targets"] if t not in fo.available_targets()]
    if not unsupported:
        pytest.skip("this CPU supports every target built")
    run = run_python("import fastoptim", FASTOPTIM_ISA=unsupported[0])
    assert run.returncode != 0 and "does not support" in run.stderr


def test_omp_num_threads_is_respected():
    run = run_python("import fastoptim as fo; print(fo.get_num_threads())", OMP_NUM_THREADS="3")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "3"
