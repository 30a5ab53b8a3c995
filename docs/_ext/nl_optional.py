"""Guides that may not exist yet: listed in a toctree by a glob that is allowed to match nothing.

Work on other branches adds guides on its own schedule. ``index.md`` can list one with a glob
(``<name>*``) so the site includes it as soon as its file exists; until then Sphinx warns that the glob matched nothing, and ``-W`` would fail the
build. This extension drops exactly that warning for the globs named in ``optional_docs`` (conf.py),
and no other: a glob missing from the list, or a plain toctree entry naming a missing page, still
fails the build.
"""

from __future__ import annotations

import logging
from typing import Any

_MESSAGE = "toctree glob pattern %r didn't match any documents"


class _OptionalGlobs(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = set(patterns)

    def filter(self, record: logging.LogRecord) -> bool:
        unmatched = record.msg == _MESSAGE or str(record.msg).startswith("toctree glob pattern")
        return not (unmatched and record.args and record.args[0] in self.patterns)


def _install(app: Any, config: Any) -> None:
    logging.getLogger("sphinx.sphinx.directives.other").addFilter(_OptionalGlobs(config.optional_docs))


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("optional_docs", [], "env", list)
    app.connect("config-inited", _install)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
