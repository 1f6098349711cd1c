"""A Python snippet in a fresh interpreter: for what a process reads only once, when
`import fastoptim` loads the extension and OpenMP (targets, threads, wait and binding variables)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable


def run_python(code: str, without: Iterable[str] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with this environment, less the variables named in `without`, plus `env`."""
    dropped = set(without)
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env},
                          timeout=120)
