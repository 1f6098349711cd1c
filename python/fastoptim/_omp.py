"""GNU OpenMP's busy-wait after a parallel region: what this process started with, and the
shorter spin the docs recommend where BLAS runs between steps.

GNU OpenMP reads its wait settings once, when it is loaded, and a process has one GNU OpenMP
for everyone who uses it: torch loads a copy under the same name, so whichever library comes
first loads it and the other shares it, settings included. fastoptim changes none of them
(bench/README.md, "Threads that share the machine": writing ``GOMP_SPINCOUNT`` at import did
not pay for changing the environment of the user's process and its children).
"""

from __future__ import annotations

import os

SHORT_SPIN = "1000"  # GOMP_SPINCOUNT for a loop of BLAS between steps on few cores (docs/arrays.md)
OPENMP_DEFAULT_SPIN = "300000"  # GNU OpenMP's own GOMP_SPINCOUNT when neither variable is set
VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

chosen_by: str | None = None  # who put the wait variables in the environment, when not the user


def wait_settings() -> dict[str, str | None]:
    """The wait variables this process started GNU OpenMP with, and who set them (``None``:
    nobody, GNU OpenMP uses its own)."""
    values = {name: os.environ.get(name) for name in VARIABLES}
    by = (chosen_by or "environment") if any(v is not None for v in values.values()) else None
    return {**values, "set_by": by}


def wait_text() -> str:
    """The wait variables that are set, as ``NAME=value, ...``; empty when GNU OpenMP uses its own."""
    return ", ".join(f"{name}={value}" for name, value in wait_settings().items()
                     if name != "set_by" and value is not None)
