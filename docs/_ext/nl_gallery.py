"""Run ``docs/_scripts/gallery.py`` during the build; the gallery page waits for its pictures.

The script trains and searches for about a minute, so it runs in a child process started when the
builder starts, while Sphinx reads the other pages (autodoc imports, notebooks executed by
myst-nb); the gallery page is read last and waits for the child there. A failed script fails the
build with its output. The pictures go to ``docs/_generated/gallery/`` (ignored by git).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError

SCRIPT = Path(__file__).resolve().parents[1] / "_scripts" / "gallery.py"
DOCNAME = "gallery"
TIMEOUT_S = 900


class _Gallery:
    process: subprocess.Popen | None = None
    log: Any = None


def _start(app: Any) -> None:
    if app.builder.format != "html":
        return
    out = Path(app.srcdir) / "_generated" / "gallery"
    _Gallery.log = tempfile.TemporaryFile(mode="w+")
    _Gallery.process = subprocess.Popen([sys.executable, str(SCRIPT), str(out)], stdout=_Gallery.log,
                                        stderr=subprocess.STDOUT, text=True)


def _read_last(app: Any, env: Any, docnames: list[str]) -> None:
    if DOCNAME in docnames:  # the other pages are read while the pictures are drawn
        docnames.remove(DOCNAME)
        docnames.append(DOCNAME)


def _wait(app: Any, docname: str | None = None, source: Any = None) -> None:
    process = _Gallery.process
    if process is None or (docname is not None and docname != DOCNAME):
        return
    _Gallery.process = None
    try:
        code = process.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        code = f"killed after {TIMEOUT_S} s"
    _Gallery.log.seek(0)
    output = _Gallery.log.read()
    _Gallery.log.close()
    if code != 0:
        raise ExtensionError(f"{SCRIPT} failed ({code}); its output:\n{output[-6000:]}")


def _finish(app: Any, exception: Exception | None) -> None:
    if _Gallery.process is not None:  # the gallery page was not read (a partial build): reap the child
        _Gallery.process.kill()
        _Gallery.process.wait()
        _Gallery.process = None


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _start)
    app.connect("env-before-read-docs", _read_last)
    app.connect("source-read", _wait)
    app.connect("build-finished", _finish)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
