"""Every public name has a docstring, and the API reference is generated for every public name.

"Public" is read from the package the way the docs build reads it (``docs/_ext/nl_api.py``): every
name in every ``__all__``, in every module that defines one, so a module or a name added later is
covered with no change here. The built HTML is checked in ``test_site.py``.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import doc_pages  # noqa: F401  (puts docs/_ext on sys.path)
import nl_api
import nl_lightning

ENTRIES = nl_api.public_names()
HOMES = [entry for entry in ENTRIES if entry.is_home]


def test_every_module_with_all_is_found():
    """The source scan that finds public modules agrees with importing every module of the package."""
    imported = {"nl_lightning"}
    for info in pkgutil.walk_packages(nl_lightning.__path__, "nl_lightning."):
        if info.name.endswith("__main__"):  # importing it runs the command line
            continue
        if "__all__" in vars(importlib.import_module(info.name)):
            imported.add(info.name)
    assert sorted(imported) == nl_api.public_modules()


def test_names_are_checked():
    """Guards the parametrization below against an empty or shrunken list (e.g. a broken scan)."""
    modules = {entry.module for entry in ENTRIES}
    assert {"nl_lightning", "nl_lightning.nn", "nl_lightning.models", "nl_lightning.data", "nl_lightning.callbacks",
            "nl_lightning.compress", "nl_lightning.export", "nl_lightning.serve", "nl_lightning.track",
            "nl_lightning.tune"} <= modules
    assert len(HOMES) >= 150


@pytest.mark.parametrize("entry", HOMES, ids=lambda e: e.path)
def test_public_name_has_a_docstring(entry):
    doc = nl_api.docstring(entry)
    where = f"{entry.obj.__module__}.{entry.name}" if hasattr(entry.obj, "__module__") else entry.path
    assert doc.strip(), (
        f"{entry.path} is public (in {entry.module}.__all__) but has no docstring: write one at {where} "
        "(for a constant, a `#:` comment on the line above its assignment)."
    )


@pytest.mark.parametrize("module", nl_api.public_modules())
def test_api_page_documents_every_name(module):
    """The generated page has one directive per name of the module's ``__all__``: the full entry at
    the name's home, an alias entry linking there elsewhere."""
    entries = [e for e in ENTRIES if e.module == module]
    page = nl_api.module_page(module, entries)
    assert page.startswith(f"{module}\n"), page[:200]
    for entry in entries:
        if entry.is_home and entry.kind in ("class", "exception", "function"):
            assert f":: {entry.path}\n" in page, f"{entry.path} missing from the page of {module}"
        else:
            assert f":: {entry.name}\n" in page, f"{entry.path} missing from the page of {module}"
        if not entry.is_home:
            assert f"`{entry.home_path}`" in page, f"{entry.path} does not link to {entry.home_path}"
