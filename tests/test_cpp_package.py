"""The C++ side of the installed package (issue 30): its headers and CMake package, and the
commands that say where they are. (.ci/checks/40-wheel.sh builds examples/cpp against the CMake
package of the wheel installed in a clean virtual environment.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastoptim", *args], capture_output=True, text=True)


def test_the_headers_are_installed_and_the_commands_say_where() -> None:
    include = Path(fo.get_include())
    assert (include / "fastoptim" / "fastoptim.hpp").is_file()
    shipped = {p.relative_to(include).as_posix() for p in include.rglob("*.hpp")}
    in_tree = {p.relative_to(ROOT / "cpp" / "include").as_posix() for p in (ROOT / "cpp" / "include").rglob("*.hpp")}
    assert shipped == in_tree  # every header, none stale
    done = _run("--includes")
    assert done.returncode == 0 and done.stdout.strip() == f"-I{include}", done


def test_the_cmake_package_is_installed_with_its_version() -> None:
    cmake_dir = Path(fo.get_cmake_dir())
    for name in ("fastoptimConfig.cmake", "fastoptimConfigVersion.cmake", "fastoptimTargets.cmake"):
        assert (cmake_dir / name).is_file(), name
    assert f'set(PACKAGE_VERSION "{fo.__version__}")' in (cmake_dir / "fastoptimConfigVersion.cmake").read_text()
    assert "fastoptim::kernels" in (cmake_dir / "fastoptimTargets.cmake").read_text()
    done = _run("--cmakedir")
    assert done.returncode == 0 and done.stdout.strip() == str(cmake_dir), done
    assert _run("--cmakedir", "extra").returncode == 2


def test_a_cpp_program_builds_against_the_installed_headers(tmp_path: Path) -> None:
    """examples/cpp/adam_quadratic.cpp, compiled with the installed headers alone, converges."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    built = subprocess.run([compiler, "-std=c++17", "-O2", "-ffp-contract=off", f"-I{fo.get_include()}",
                            str(ROOT / "examples" / "cpp" / "adam_quadratic.cpp"), "-o", str(tmp_path / "adam")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    ran = subprocess.run([str(tmp_path / "adam")], capture_output=True, text=True)
    assert ran.returncode == 0 and "after 2000 Adam steps" in ran.stdout, ran


def _value(i: np.ndarray, salt: int) -> np.ndarray:
    """examples/cpp/step_all_model.cpp's exact float32 inputs."""
    return (((i * 37 + salt * 11) % 101 - 50) / 64.0).astype(np.float32)


def test_step_all_from_cpp_gives_the_python_packages_bits(tmp_path: Path) -> None:
    """examples/cpp/step_all_model.cpp (three arrays, one threaded call per step, all cores) and
    fastoptim.Adam on the same inputs end on the same bytes."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    built = subprocess.run([compiler, "-std=c++17", "-O2", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
                            f"-I{fo.get_include()}", str(ROOT / "examples" / "cpp" / "step_all_model.cpp"), "-o",
                            str(tmp_path / "model")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    ran = subprocess.run([str(tmp_path / "model"), "10", str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert ran.returncode == 0, ran
    sizes = (64 * 32, 32, 32 * 10)
    params = [_value(np.arange(n), k) for k, n in enumerate(sizes)]
    opt = fo.Adam(params, lr=1e-2, weight_decay=1e-3)
    for step in range(1, 11):
        opt.step([_value(np.arange(n) + step, k + 3) for k, n in enumerate(sizes)])
    assert (tmp_path / "out.bin").read_bytes() == b"".join(p.tobytes() for p in params)
