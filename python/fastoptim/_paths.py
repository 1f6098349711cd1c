"""Where the installed package keeps its C++ headers and CMake package, for C++ builds against
it (as ``numpy.get_include()`` and ``pybind11.get_cmake_dir()`` point at theirs)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["get_cmake_dir", "get_include"]


def _installed(relative: str) -> Path:
    """`relative` under the first folder of the package that has it (an editable install spreads
    the package over the source tree and the folder its build installed into)."""
    for folder in sys.modules[__package__ or "fastoptim"].__path__:  # the package, already imported
        candidate = Path(folder) / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"this fastoptim install has no {relative}: it was not installed by pip (pip install "
                            "fastoptim, or pip install . from a checkout)")


def get_include() -> str:
    """The folder to add to the include path for ``#include <fastoptim/fastoptim.hpp>``."""
    return str(_installed("include/fastoptim/fastoptim.hpp").parent.parent)


def get_cmake_dir() -> str:
    """The folder holding ``fastoptimConfig.cmake``: ``-Dfastoptim_DIR=...`` for
    ``find_package(fastoptim CONFIG REQUIRED)``, which gives ``fastoptim::kernels`` (the header-only
    kernels) and ``fastoptim::runtime`` (the library of every target's kernels, chosen at run time)."""
    return str(_installed("cmake/fastoptimConfig.cmake").parent)
