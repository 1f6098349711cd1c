"""The scripts in examples/ run, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastoptim as fo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = EXAMPLES / name
    if not script.is_file():
        pytest.skip(f"{script} is not here (tests run without the repository's examples/)")
    env = dict(os.environ)  # the child imports this very fastoptim
    root = str(Path(fo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-W", "error", str(script), *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_train_mlp_resumes_exactly(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pkl"
    proc = run_example("train_mlp.py", "--epochs", "4", "--checkpoint", str(checkpoint))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed run matches the straight run: True (largest weight difference 0)" in proc.stdout
    assert checkpoint.stat().st_size > 0


def test_train_fused_step_freezes_skips_and_averages() -> None:
    proc = run_example("train_fused_step.py", "--epochs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "steps skipped: 1;" in proc.stdout
    assert "frozen layer unchanged: True; its step count: 0" in proc.stdout
    assert proc.stdout.count("EMA test acc") == 2


def test_torch_cpu_trains_and_its_checkpoint_is_torchs() -> None:
    pytest.importorskip("torch")
    proc = run_example("torch_cpu.py", "--epochs", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    accuracy = float(proc.stdout.split("final test accuracy: ")[1].split()[0])
    assert accuracy > 0.9
    gap = float(proc.stdout.split("ends within ")[1].split()[0])
    assert gap < 1e-4  # float32 rounding of two implementations of one rule, not a different trajectory
