"""Every Python block of the documentation runs: each page's blocks in order, in one namespace,
in a temporary folder, after the page's hidden setup (an HTML comment starting ``<!-- test
setup``, which defines what an excerpt takes as given, such as a model or a batch). Also: every
scheduler has a figure on the schedules page, and the README fits on a screen."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_generated" not in p.parts) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SETUP = re.compile(r"^<!-- test setup[^\n]*\n(.*?)^-->", re.S | re.M)
NEEDS = {"torch": "torch", "distributed": "mpi4py"}  # pages whose blocks need an optional package


def _pages_with_code() -> list[Path]:
    return [p for p in PAGES if BLOCK.search(p.read_text())]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page.read_text()
    for needed_by, module in NEEDS.items():
        if needed_by in page.stem or (page.name == "README.md" and module == "torch"):
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)  # blocks that save files write them here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    setups = SETUP.findall(text)
    assert len(setups) <= 1, f"{page.name}: one test setup per page"
    for setup in setups:
        exec(compile(setup, f"{page.name} (setup)", "exec"), namespace)  # noqa: S102
    blocks = BLOCK.findall(text)
    for index, code in enumerate(blocks):
        exec(compile(code, f"{page.name} block {index}", "exec"), namespace)  # noqa: S102


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
