"""Sphinx configuration of the nl_lightning documentation site (``make docs``).

Markdown pages through MyST, notebooks executed by myst-nb, the API reference from the docstrings
(autodoc + napoleon, one page per module with an ``__all__``, written by ``_ext/nl_api.py``),
cross-links to Python, NumPy, PyTorch, Lightning, Optuna, LitServe and MLflow through inventories
written from the installed packages (``_ext/nl_inventories.py``: no network), and the gallery drawn
at build time (``_ext/nl_gallery.py``). ``make docs`` builds with ``-W --keep-going -n``: any
warning fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import nl_lightning  # noqa: E402

project = "nl_lightning"
author = "nl_lightning contributors"
copyright = "nl_lightning contributors, Apache-2.0"
release = version = nl_lightning.__version__

extensions = [
    "myst_nb",  # Markdown (it includes myst_parser) and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "nl_autodoc",  # attribute docstrings as written; internal types in signatures as plain text
    "nl_inventories",  # sphinx.ext.intersphinx on inventories written from the installed packages
    "nl_generated",  # api/, benchmarks/ and notebooks/ pages, written from the repository
    "nl_gallery",  # the gallery's pictures, drawn by _scripts/gallery.py
    "nl_optional",  # optional_docs: toctree globs of guides that may not exist yet
]

exclude_patterns = ["_build", "_ext", "_scripts", "_generated", "**.ipynb_checkpoints"]
root_doc = "index"

# --- every warning is an error; references to our own names must resolve ---------------------
nitpicky = True
# Types of libraries with no inventory written offline (see _ext/nl_inventories.py) stay plain text.
# torchmetrics: its pages go by metric family (classification/accuracy.html, ...), so the page of a
# name cannot be derived from the name and no inventory is written. Never list our own names here.
nitpick_ignore_regex: list[tuple[str, str]] = [(r"py:.*", r"torchmetrics(\..*)?")]
# A public class is documented where it lives and where it is re-exported (``nl_lightning.TransformerConfig``,
# ``nl_lightning.models.TransformerConfig``): a bare name in a signature then matches several entries
# of the same object. Sphinx links the first; the warning says nothing wrong, so it is not an error.
suppress_warnings = ["ref.python"]
# Guides written on other branches: listed in index.md by these globs, which may match nothing yet
# (none today; see CONTRIBUTING.md, "How to add a guide").
optional_docs: list[str] = []

# --- API reference -----------------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource"}
autodoc_inherit_docstrings = False  # an override without a docstring is not listed with its parent's text
autoclass_content = "both"  # the class docstring, then __init__'s (where the arguments are described)
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
python_use_unqualified_type_names = True

# --- Markdown and notebooks ------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # every build runs every notebook: what is shown is what runs today
nb_execution_in_temp = True  # in a scratch folder: runs/ and models/ never land in the repository
nb_execution_timeout = 600
# A failing cell (every notebook asserts its results) is a warning with its traceback, so -W fails the
# build after reporting every other warning too (raising instead would stop at the first notebook).
nb_execution_raise_on_error = False
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove"  # Lightning's banners and warnings: the pages show what the cells print and return

# --- HTML ------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"nl_lightning {version}"
html_static_path: list[str] = []
html_show_sourcelink = False
