#!/usr/bin/env bash
# ruff with the rule sets in pyproject.toml (pycodestyle, pyflakes, bugbear, pyupgrade, isort,
# NumPy, pytest) over every Python file of the project.
set -euo pipefail
python -m pip install --quiet ruff
ruff check python tests bench examples
