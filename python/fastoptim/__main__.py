"""The ``fastoptim`` command (also ``python -m fastoptim``): demo, info, bench."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

USAGE = """\
usage: fastoptim <command> [options]

commands:
  demo     train a NumPy MLP on the bundled digits with several optimizers and compare them
           (--landscape: their paths on 2-D test functions); `fastoptim demo --help`
  info     the build and runtime configuration (fastoptim.show_config())
  bench    benchmarks (`fastoptim bench --help`)

options:
  --includes   the -I flag for the C++ headers (#include <fastoptim/fastoptim.hpp>)
  --cmakedir   the folder of fastoptimConfig.cmake (cmake -Dfastoptim_DIR=...), which gives
               fastoptim::kernels (header-only) and fastoptim::runtime (runtime dispatch)
  --version
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        (sys.stdout if args else sys.stderr).write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("--includes", "--cmakedir"):
        if rest:
            sys.stderr.write(f"fastoptim {command}: takes no arguments, got {' '.join(rest)}\n")
            return 2
        from ._paths import get_cmake_dir, get_include

        try:
            print(f"-I{get_include()}" if command == "--includes" else get_cmake_dir())
        except FileNotFoundError as error:
            sys.stderr.write(f"fastoptim {command}: {error}\n")
            return 1
        return 0
    if command in ("-V", "--version"):
        import fastoptim

        print(f"fastoptim {fastoptim.__version__}")
        return 0
    if command == "demo":
        from .demo.run import main as demo_main

        return demo_main(rest)
    if command == "info":
        if rest:
            sys.stderr.write(f"fastoptim info: takes no arguments, got {' '.join(rest)}\n")
            return 2
        import fastoptim

        fastoptim.show_config()
        return 0
    if command == "bench":
        if importlib.util.find_spec("fastoptim._bench") is None:
            sys.stderr.write("fastoptim bench: this fastoptim has no benchmarks (fastoptim._bench is missing); "
                             "run the scripts in the repository's bench/ folder instead\n")
            return 2
        result = importlib.import_module("fastoptim._bench").main(rest)
        return int(result or 0)
    sys.stderr.write(f"fastoptim: unknown command {command!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
