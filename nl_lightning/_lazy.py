"""``lazy_exports``: a package's public names imported on first use (PEP 562), so importing the
package costs nothing until a name is asked for (``import nl_lightning.nn`` needs torch alone)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each name to its module."""
    module = sys.modules[package]
    # A name that is also its submodule's name (``export.evaluate`` in ``export/evaluate.py``) would be
    # replaced by that submodule as soon as anything imports it (the import system sets the package
    # attribute), and the hook below would never run: such names are bound now.
    for name, source in exports.items():
        if source == f"{package}.{name}":
            setattr(module, name, getattr(importlib.import_module(source), name))

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(module, name, value)  # later lookups skip this hook
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*vars(module), *exports])

    return __getattr__, __dir__
