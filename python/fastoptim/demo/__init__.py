"""``fastoptim demo``: fastoptim training a real NumPy model, and the pieces to copy from it.

- :mod:`fastoptim.demo.mlp`: a multilayer perceptron with its backward pass in plain NumPy;
- :mod:`fastoptim.demo.data`: the UCI handwritten digits shipped with fastoptim (CC BY 4.0);
- :mod:`fastoptim.demo.landscape`: Rosenbrock, Beale and a saddle, for optimizer paths in 2-D;
- :mod:`fastoptim.demo.run`: the command itself (``python -m fastoptim demo --help``).
"""

from __future__ import annotations

from .run import main

__all__ = ["main"]
