"""Sphinx configuration of fastoptim's documentation (built in CI with warnings as errors:
``sphinx-build -W -b html docs build/docs``, .ci/checks/50-docs.sh)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import fastoptim  # noqa: E402  (the installed package: autodoc reads its docstrings)

project = "fastoptim"
author = "the fastoptim developers"
copyright = "2026, the fastoptim developers"
release = version = fastoptim.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "schedule_plots"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.md"]  # the generated fragments are included, not pages
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"fastoptim {release}"
