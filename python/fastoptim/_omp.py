"""GNU OpenMP's busy-wait after a parallel region: fastoptim's default, and what a process has.

GNU OpenMP reads its wait settings once, when it is loaded, and a process has one GNU OpenMP
for everyone who uses it: torch loads a copy under the same name, so whichever library comes
first loads it and the other shares it, settings included.
"""

from __future__ import annotations

import os

FASTOPTIM_SPIN = "1000"
OPENMP_DEFAULT_SPIN = "300000"  # GNU OpenMP's own GOMP_SPINCOUNT when neither variable is set
_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

set_on_import = False  # whether `import fastoptim` chose GOMP_SPINCOUNT (else the environment did)
chosen_by: str | None = None  # who put the wait variables in the environment, when known


def shorten_spin() -> None:
    """Set GOMP_SPINCOUNT to FASTOPTIM_SPIN unless the user set either wait variable.

    After a parallel region, OpenMP's threads spin for a while before sleeping. GNU OpenMP's
    default spin (~300k iterations) kept our two threads busy between training steps and
    starved NumPy's BLAS threads on the same cores: a matmul + step loop ran 2x slower, and a
    demo epoch up to 70x slower under load. A short spin keeps back-to-back steps nearly as
    fast. It acts only if GNU OpenMP is not loaded yet, and then for torch's threads too."""
    global set_on_import
    if not any(name in os.environ for name in _VARIABLES):
        os.environ["GOMP_SPINCOUNT"] = FASTOPTIM_SPIN
        set_on_import = True


def wait_settings() -> dict[str, str | None]:
    """The wait variables this process started GNU OpenMP with, and who set them."""
    return {**{name: os.environ.get(name) for name in _VARIABLES},
            "set_by": "fastoptim" if set_on_import else chosen_by or "environment"}


def wait_text() -> str:
    """The wait variables that are set, as ``NAME=value, ...``; empty when GNU OpenMP uses its own."""
    return ", ".join(f"{name}={value}" for name, value in wait_settings().items()
                     if name != "set_by" and value is not None)
