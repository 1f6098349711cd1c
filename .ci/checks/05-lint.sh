#!/usr/bin/env bash
# ruff with the rule sets in pyproject.toml (pycodestyle, pyflakes, bugbear, pyupgrade, isort,
# NumPy, pytest) over every Python file of the project; mypy --strict over the package, its
# annotations checked against NumPy's and the compiled module's stub (python/fastoptim/_core.pyi).
set -euo pipefail
python -m pip install --quiet ruff mypy
ruff check python tests bench examples docs
mypy --strict python/
