"""Workloads: what one step updates, a single array of N elements (``1e6``) or ``model``.

``model`` is 100 arrays of a small network's shapes (0.7M elements), where the cost per array
shows; :func:`parse_work` turns a token of ``--sizes`` into a :class:`Work`.
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


def _size_label(n: int) -> str:
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 and exponent >= 3 else str(n)


def parse_work(token: str) -> Work:
    token = token.strip()
    if token == "model":
        return Work("model", MODEL_SHAPES)
    try:
        value = float(token)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is a number of elements (1e6) or 'model', got {token!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"a size must be a whole number of elements >= 1, got {token!r}")
    n = int(value)
    return Work(_size_label(n), ((n,),))
