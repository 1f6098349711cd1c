#!/usr/bin/env bash
# The documentation site (issue 29): Sphinx with furo, MyST Markdown, autodoc and napoleon,
# built from the installed package with every warning an error; the schedules' figures are drawn
# while it builds. The code blocks of its pages run in the README's test command
# (tests/test_docs.py).
set -euo pipefail
python -m pip install --quiet ".[docs]"
rm -rf build/docs
python -m sphinx -W --keep-going -q -b html docs build/docs
test -s build/docs/index.html && test -s build/docs/_images/OneCycleLR.png
echo "docs: $(find build/docs -name '*.html' | wc -l) pages in build/docs"
