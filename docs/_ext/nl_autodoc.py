"""Two adjustments to autodoc for this package's docstrings, through Sphinx's public events.

- **Attribute docstrings stay as written.** A dataclass field's docstring here is a sentence
  ("Default: the newest version."), but napoleon reads the text before a first colon as the
  attribute's type and turns it into a broken cross-reference. The field's type is in its
  annotation already, so the lines napoleon rewrites for attributes are put back as written.
- **Dataclass defaults made by a factory** show as ``<factory>`` in the signature autodoc writes,
  which is not Python: Sphinx then cannot parse the signature and splits it at every comma
  (``Literal['a', 'b']`` included), leaving broken references. They are written ``...`` instead.
- **Internal types in public signatures.** A public function may take or return a type that is not
  itself public (``nl_lightning.data.cache.SampleCache``); autodoc writes a reference to it, which
  has no page. On the API pages such a reference is kept as plain text when the name exists in the
  package; a name that does not exist still fails the build, and so does any unresolved reference in
  a guide. So is a library's private type (``_T_co``, a class in a private module) that no inventory
  lists.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

_KEEP = ("attribute", "property", "data")
_saved: dict[int, list[str]] = {}


def _save(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in _KEEP:
        _saved[id(lines)] = list(lines)


def _restore(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in _KEEP and id(lines) in _saved:
        lines[:] = _saved.pop(id(lines))


def _factory_defaults(app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None,
                      return_annotation: str | None) -> tuple[str | None, str | None] | None:
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def exists(dotted: str) -> bool:
    """Does ``nl_lightning.x.y.Z`` (or a member of it) name something in the installed package?"""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _candidates(node: Any) -> list[str]:
    """The reference's target, then as written relative to its class and module, then (for a bare
    name, as in ``:class:`ArrayBatchSampler``` in a docstring) in any loaded module of the package."""
    target = node.get("reftarget", "").lstrip("~.")
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    names = [target, f"{module}.{target}", f"{module}.{cls}.{target}"]
    if "." not in target:
        names += [f"{name}.{target}" for name, mod in list(sys.modules.items())
                  if name.startswith("nl_lightning.") and hasattr(mod, target)]
    return [name for name in names if name.startswith("nl_lightning.")]


def _private_elsewhere(node: Any) -> bool:
    """A library's private type in one of our signatures (``torch.utils.data``'s ``_T_co``,
    ``onnxscript.rewriter._rewrite_rule.RewriteRuleSet``, ``litserve.loops.continuous_batching_loop.Output``):
    no inventory lists it, so it has no page to link to."""
    target = node.get("reftarget", "").lstrip("~.")
    if target.startswith("nl_lightning."):
        return False
    parts = target.split(".")
    return any(p.startswith("_") for p in parts) or (len(parts) > 1 and _importable(target))


def _importable(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        return all((obj := getattr(obj, attr, None)) is not None for attr in parts[split:])
    return False


def _internal_type(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py" or not node.get("refdoc", "").startswith("api/"):
        return None
    return contnode if any(exists(name) for name in _candidates(node)) or _private_elsewhere(node) else None


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("autodoc-process-docstring", _save, priority=100)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _restore, priority=900)
    app.connect("autodoc-process-signature", _factory_defaults)
    app.connect("missing-reference", _internal_type, priority=950)  # after intersphinx and the domains
    return {"parallel_read_safe": True, "parallel_write_safe": True}
