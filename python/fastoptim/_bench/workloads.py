"""Workloads: what one step updates, a single array of N elements (``1e6``), one R x C matrix
(``7000x7000``) or ``model``.

``model`` is 100 arrays of a small network's shapes (0.7M elements), where the cost per array
shows; :func:`parse_work` turns a token of ``--sizes`` into a :class:`Work`.

Rules that need matrices (Adafactor factors the second moment of a 2-D array into rows and
columns; a vector takes its unfactored path) step a size of N elements as a near-square matrix:
:meth:`Work.as_matrix` makes it rows x N/rows, rows the largest divisor of N that is at most
isqrt(N) (1e6: 1000 x 1000; 5e7: 6250 x 8000; a prime N: 1 x N). An ``RxC`` token or ``model``
(whose 2-D arrays are matrices already, its vectors kept as a model has them) is stepped as given.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

MODEL_SHAPES: tuple[tuple[int, ...], ...] = ((256, 256), (256,)) * 8 + ((64, 64), (64,)) * 42
DEFAULT_SIZES = "1e4,1e5,1e6,1e7,5e7,model"


@dataclass(frozen=True)
class Work:
    label: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def as_matrix(self) -> Work:
        """The same elements as a near-square matrix where this is one vector; else unchanged."""
        if len(self.shapes) != 1 or len(self.shapes[0]) != 1:
            return self
        return Work(self.label, (near_square(self.shapes[0][0]),))


def near_square(n: int) -> tuple[int, int]:
    """(rows, n // rows), rows the largest divisor of `n` that is at most isqrt(n)."""
    rows = next(r for r in range(math.isqrt(n), 0, -1) if n % r == 0)
    return rows, n // rows


def _size_label(n: int) -> str:
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 and exponent >= 3 else str(n)


def _count(text: str, token: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is a number of elements (1e6), rows x columns (7000x7000) or "
                                         f"'model', got {token!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"a size must be a whole number of elements >= 1, got {token!r}")
    return int(value)


def parse_work(token: str) -> Work:
    token = token.strip()
    if token == "model":
        return Work("model", MODEL_SHAPES)
    if "x" in token:
        rows, _, cols = token.partition("x")
        shape = (_count(rows, token), _count(cols, token))
        return Work(f"{shape[0]}x{shape[1]}", (shape,))
    n = _count(token, token)
    return Work(_size_label(n), ((n,),))
