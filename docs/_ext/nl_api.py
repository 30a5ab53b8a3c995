"""The public API, read from the package itself: every module that defines ``__all__``, every name in it.

The API reference is generated from this at build time (one page per module, :func:`write_pages`), and
``tests/docs/`` checks the same list (every name has a docstring and appears in the reference), so a
name added to any ``__all__`` — in a package that exists today or one added later — is documented and
checked with no change to the docs.

A name exported from several modules (``nl_lightning.TransformerLM`` and
``nl_lightning.models.TransformerLM``) is documented in full once, at its *home*: the exporting module
closest to where it is defined; the other modules list it as an alias that links there.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "nl_lightning"
ROOT = Path(__file__).resolve().parents[2]
_DEFINES_ALL = re.compile(r"^__all__\s*[:=]", re.M)


@dataclass(frozen=True)
class PublicName:
    """One name of one module's ``__all__``."""

    module: str  # the exporting module, e.g. nl_lightning.nn
    name: str
    obj: Any
    kind: str  # class | exception | function | data | module
    home: str  # the module where it is documented in full

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def home_path(self) -> str:
        return f"{self.home}.{self.name}"

    @property
    def is_home(self) -> bool:
        return self.module == self.home


def public_modules() -> list[str]:
    """Every module of the package whose source assigns ``__all__``, sorted."""
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        if _DEFINES_ALL.search(path.read_text()):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def kind_of(obj: Any) -> str:
    """The Python domain's name for the object: module, exception, class, function or data."""
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def public_names() -> list[PublicName]:
    """Every (module, name) of every ``__all__``, with the module each object is documented in."""
    exported: list[tuple[str, str, Any]] = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        exported += [(module_name, name, getattr(module, name)) for name in module.__all__]
    homes: dict[int, str] = {}
    for module_name, name, obj in exported:
        if kind_of(obj) in ("class", "exception", "function"):
            best = homes.get(id(obj))
            if best is None or _closeness(module_name, obj) > _closeness(best, obj):
                homes[id(obj)] = module_name
    return [
        PublicName(module_name, name, obj, kind_of(obj), homes.get(id(obj), module_name))
        for module_name, name, obj in exported
    ]


def _closeness(module_name: str, obj: Any) -> tuple[int, int]:
    """How near ``module_name`` is to where ``obj`` is defined: a longer shared prefix wins."""
    defined = getattr(obj, "__module__", "") or ""
    shared = defined == module_name or defined.startswith(module_name + ".")
    return (1 if shared else 0, len(module_name.split(".")))


def docstring(entry: PublicName) -> str:
    """The object's own documentation: its docstring, or for data the ``#:`` comment (or string)
    beside its assignment in the module that defines it. Empty when there is none."""
    obj = entry.obj
    if entry.kind in ("class", "exception"):
        doc = obj.__dict__.get("__doc__") or ""
        if _is_generated_dataclass_doc(obj, doc):
            return ""
        return inspect.cleandoc(doc)
    if entry.kind in ("function", "module"):
        return inspect.cleandoc(obj.__doc__ or "")
    return data_docstring(entry)


def _is_generated_dataclass_doc(cls: type, doc: str) -> bool:
    """``dataclasses`` writes ``Name(field: type = ...)`` as the docstring of a class that has none."""
    return bool(getattr(cls, "__dataclass_fields__", None)) and doc.startswith(f"{cls.__name__}(")


def data_docstring(entry: PublicName) -> str:
    from sphinx.pycode import ModuleAnalyzer

    for module_name in _defining_modules(entry):
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        if ("", entry.name) in docs:
            return "\n".join(docs["", entry.name]).strip()
    return ""


def _defining_modules(entry: PublicName) -> list[str]:
    """The exporting module first, then every loaded submodule of the package holding the same object."""
    import sys

    found = [entry.module]
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith(PACKAGE + ".") and getattr(module, entry.name, None) is entry.obj:
            found.append(module_name)
    return found


def page_name(module_name: str) -> str:
    return f"api/{module_name}"


def module_page(module_name: str, entries: list[PublicName]) -> str:
    """reST for one module: its docstring, then each name in ``__all__`` order."""
    title = module_name
    lines = [title, "=" * len(title), "", f".. automodule:: {module_name}", "   :no-members:", ""]
    for entry in entries:
        lines += _entry_lines(entry) + [""]
    return "\n".join(lines)


_DIRECTIVES = {"class": "autoclass", "exception": "autoexception", "function": "autofunction"}


def _entry_lines(entry: PublicName) -> list[str]:
    if not entry.is_home:  # inside the page's module (set by automodule): a name relative to it
        role = {"exception": "exc", "function": "func"}.get(entry.kind, "class")
        directive = "py:function" if entry.kind == "function" else f"py:{entry.kind}"
        return [f".. {directive}:: {entry.name}", "",
                f"   The same object as :{role}:`{entry.home_path}` (documented there)."]
    if entry.kind in _DIRECTIVES:
        lines = [f".. {_DIRECTIVES[entry.kind]}:: {entry.path}"]
        if entry.kind != "function":
            lines += ["   :members:", "   :show-inheritance:"]
        return lines
    if entry.kind == "module":
        return [f".. py:module:: {entry.obj.__name__}", "   :no-index:", "", f"   See :mod:`{entry.obj.__name__}`."]
    return _data_lines(entry)


def _data_lines(entry: PublicName) -> list[str]:
    value = " ".join(repr(entry.obj).split())
    if len(value) > 200:
        value = value[:197] + "..."
    doc = data_docstring(entry)
    return [f".. py:data:: {entry.name}", f"   :value: {value}", ""] + [f"   {line}" for line in doc.splitlines()]


def index_page(modules: list[str]) -> str:
    lines = [
        "API reference", "=============", "",
        "Every name in every ``__all__`` of the package, generated from the docstrings at build time.",
        "A name exported by several modules is documented once, where it is defined, and linked from the others.",
        "", ".. toctree::", "   :maxdepth: 1", "",
    ]
    lines += [f"   {module_name}" for module_name in modules]
    return "\n".join(lines) + "\n"


def write_pages(srcdir: Path) -> list[Path]:
    """Write ``api/index.rst`` and one ``api/<module>.rst`` per public module (only files whose text
    changed, so an unchanged page is not re-read); remove pages of modules that no longer exist."""
    entries = public_names()
    modules = sorted({e.module for e in entries} | set(public_modules()))
    out = srcdir / "api"
    out.mkdir(exist_ok=True)
    pages = {out / "index.rst": index_page(modules)}
    for module_name in modules:
        pages[out / f"{module_name}.rst"] = module_page(module_name, [e for e in entries if e.module == module_name])
    for stale in set(out.glob("*.rst")) - set(pages):
        stale.unlink()
    for path, text in pages.items():
        _write_if_changed(path, text)
    return list(pages)


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
