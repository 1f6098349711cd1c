#!/usr/bin/env python3
"""The full side-by-side benchmark: every rule, float32 and float64, every size.

    python bench/bench.py                      # the full grid, into bench/results/
    python bench/bench.py --rules adam,lion    # any option of `python -m fastoptim bench`

The engine is fastoptim._bench (also behind `python -m fastoptim bench`, whose default is the
quick run); this script only changes the defaults. See bench/README.md for the columns.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from fastoptim import _bench
except ImportError:  # a source checkout with the extension built in place: use python/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from fastoptim import _bench

if __name__ == "__main__":
    sys.exit(_bench.main(sys.argv[1:], full=True, prog="bench/bench.py"))
