"""The C++ side of the installed package (issue 30): its headers and CMake package, and the
commands that say where they are. (.ci/checks/40-wheel.sh builds examples/cpp against the CMake
package of the wheel installed in a clean virtual environment.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo

ROOT = Path(__file__).resolve().parent.parent


RUNTIME_LIBRARY = "fastoptim_runtime.lib" if sys.platform == "win32" else "libfastoptim_runtime.a"


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
    targets = (cmake_dir / "fastoptimTargets.cmake").read_text()
    assert "fastoptim::kernels" in targets and "fastoptim::runtime" in targets
    assert (cmake_dir.parent / "lib" / RUNTIME_LIBRARY).is_file()
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
    """examples/cpp/three_array_model.hpp's exact float32 inputs."""
    return (((i * 37 + salt * 11) % 101 - 50) / 64.0).astype(np.float32)


def _python_adam_bytes(steps: int) -> bytes:
    """The three-array model's parameters after `steps` steps of fastoptim.Adam, end to end."""
    sizes = (64 * 32, 32, 32 * 10)
    params = [_value(np.arange(n), k) for k, n in enumerate(sizes)]
    opt = fo.Adam(params, lr=1e-2, weight_decay=1e-3)
    for step in range(1, steps + 1):
        opt.step([_value(np.arange(n) + step, k + 3) for k, n in enumerate(sizes)])
    return b"".join(p.tobytes() for p in params)


def _build_example(name: str, out: Path, *extra: str) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    built = subprocess.run([compiler, "-std=c++17", "-O2", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
                            f"-I{fo.get_include()}", str(ROOT / "examples" / "cpp" / f"{name}.cpp"), *extra, "-o",
                            str(out)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_step_all_from_cpp_gives_the_python_packages_bits(tmp_path: Path) -> None:
    """examples/cpp/step_all_model.cpp (three arrays, one threaded call per step, all cores) and
    fastoptim.Adam on the same inputs end on the same bytes."""
    model = _build_example("step_all_model", tmp_path / "model")
    ran = subprocess.run([str(model), "10", str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert ran.returncode == 0, ran
    assert (tmp_path / "out.bin").read_bytes() == _python_adam_bytes(10)


def test_runtime_dispatch_from_cpp_gives_the_same_bits_on_every_target(tmp_path: Path) -> None:
    """examples/cpp/dispatched_model.cpp, built for the x86-64 baseline (no -m flags) and linked
    with the installed runtime library, runs the widest target by default and each target
    FASTOPTIM_ISA names: the same bytes as fastoptim.Adam's every time."""
    library = Path(fo.get_cmake_dir()).parent / "lib" / RUNTIME_LIBRARY
    model = _build_example("dispatched_model", tmp_path / "dispatched", str(library))
    expected = _python_adam_bytes(10)
    for isa in [None, *fo.available_targets()]:
        env = {k: v for k, v in os.environ.items() if k != "FASTOPTIM_ISA"}
        if isa is not None:
            env["FASTOPTIM_ISA"] = isa
        out = tmp_path / f"{isa}.bin"
        ran = subprocess.run([str(model), "10", str(out)], capture_output=True, text=True, env=env)
        assert ran.returncode == 0, ran
        assert f"on the {isa or fo.available_targets()[-1]} kernels" in ran.stdout, ran.stdout
        assert out.read_bytes() == expected, isa
