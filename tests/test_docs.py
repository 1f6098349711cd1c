"""Every code block of the documentation runs: each page's Python blocks in order, in one
namespace, in a temporary folder, after the page's hidden setup (an HTML comment starting
``<!-- test setup``, which defines what an excerpt takes as given, such as a model or a batch);
each C++ block compiled against this checkout's headers and run. (Shell blocks are the install
and run commands; CI runs those itself.) Also: every scheduler has a figure on the schedules page,
and the README fits on a screen."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_generated" not in p.parts) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SETUP = re.compile(r"^<!-- test setup(?! cpp)[^\n]*\n(.*?)^-->", re.S | re.M)
NEEDS = {"torch": "torch", "distributed": "mpi4py"}  # pages whose blocks need an optional package


def _pages_with_code() -> list[Path]:
    return [p for p in PAGES if BLOCK.search(p.read_text())]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page.read_text()
    for needed_by, module in NEEDS.items():
        if needed_by in page.stem:
            pytest.importorskip(module)
    has_torch = importlib.util.find_spec("torch") is not None
    monkeypatch.chdir(tmp_path)  # blocks that save files write them here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    setups = SETUP.findall(text)
    assert len(setups) <= 1, f"{page.name}: one test setup per page"
    ran = 0
    for index, code in enumerate([*setups, *BLOCK.findall(text)]):
        if "torch" in code and not has_torch:
            continue  # the README's torch excerpt (and its setup) where torch is not installed
        where = f"{page.name} (setup)" if index < len(setups) else f"{page.name} block {index - len(setups)}"
        exec(compile(code, where, "exec"), namespace)  # noqa: S102
        ran += 1
    assert ran, f"{page.name}: no block ran"


CPP_BLOCK = re.compile(r"^```cpp\n(.*?)^```", re.S | re.M)
CPP_SETUP = re.compile(r"^<!-- test setup cpp[^\n]*\n(.*?)^-->", re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if CPP_BLOCK.search(p.read_text())],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cpp_block_of_the_page_compiles_and_runs(page: Path, tmp_path: Path) -> None:
    """Each C++ block, its #includes hoisted, runs in main() after the page's C++ setup against
    the headers of this checkout; it must change the parameter (param[0] starts at 1)."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    text = page.read_text()
    setup = "\n".join(CPP_SETUP.findall(text))
    for index, code in enumerate(CPP_BLOCK.findall(text)):
        lines = code.splitlines()
        includes = [line for line in lines if line.startswith("#include")]
        body = [line for line in lines if not line.startswith("#include")]
        source = "\n".join(["#include <cstddef>", "#include <vector>", *includes, "int main() {", setup, *body,
                             "return param[0] < 1.0f ? 0 : 1;", "}"])
        (tmp_path / "block.cpp").write_text(source)
        built = subprocess.run([compiler, "-std=c++17", "-O1", f"-I{ROOT / 'cpp' / 'include'}", "block.cpp", "-o",
                                "block"], cwd=tmp_path, capture_output=True, text=True)
        assert built.returncode == 0, f"{page.name} C++ block {index}:\n{built.stderr[-3000:]}"
        assert subprocess.run([str(tmp_path / "block")]).returncode == 0, f"{page.name} C++ block {index}"


def test_every_scheduler_is_drawn_on_the_schedules_page() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import schedule_plots
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    from fastoptim import lr_scheduler

    schedulers = {name for name in lr_scheduler.__all__ if name not in ("LRScheduler", "SupportsParamGroups")}
    assert schedulers == set(schedule_plots.EXAMPLES)
    for name in schedule_plots.EXAMPLES:  # each example runs and moves the rate
        rates = schedule_plots.learning_rates(name)
        assert len(set(rates)) > 1, name


def test_the_readme_fits_on_a_screen_and_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
