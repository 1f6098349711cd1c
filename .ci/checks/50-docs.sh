#!/usr/bin/env bash
# The documentation site (issue 29): Sphinx with furo, MyST Markdown, autodoc and napoleon,
# built from the installed package with every warning an error; the schedules' figures are drawn
# while it builds. The code blocks of its pages run in the README's test command
# (tests/test_docs.py).
set -euo pipefail
# The package comes from the README's test command (this checkout, installed in this venv): only
# the docs extra's requirements are added here, as `pip install ".[docs]"` would, without building
# the extension a third time (4 of the 4.5 minutes this check took).
python -c "import fastoptim" 2>/dev/null || python -m pip install --quiet .
docs_requirements=$(python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))')
python -m pip install --quiet $docs_requirements
rm -rf build/docs
python -m sphinx -W --keep-going -q -b html docs build/docs
test -s build/docs/index.html && test -s build/docs/_images/OneCycleLR.png
echo "docs: $(find build/docs -name '*.html' | wc -l) pages in build/docs"
