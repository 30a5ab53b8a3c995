"""Shared by the docs tests: where things are, the public names, and the Markdown code blocks of a page."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS / "_ext"))  # nl_api: the public names, as the docs build reads them

#: Markdown pages written by hand: the guides (generated folders excluded), the READMEs, CONTRIBUTING.
PAGES = sorted(DOCS.glob("*.md")) + [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "benchmarks" / "README.md"]

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None  # the reason given in a ``<!-- not run: ... -->`` comment right above it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def code_blocks(page: Path, langs: tuple[str, ...], text: str | None = None) -> list[Block]:
    """Fenced blocks of ``page`` (or of ``text``, a part of it) in one of ``langs``, in page order."""
    text = page.read_text() if text is None else text
    blocks = []
    for match in _FENCE.finditer(text):
        if match.group("lang") not in langs:
            continue
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = _NOT_RUN.search(before)
        body = "\n".join(line[len(match.group("indent")):] for line in match.group("body").splitlines())
        blocks.append(Block(page, text.count("\n", 0, match.start()) + 2, match.group("lang"), body,
                            reason.group("reason") if reason else None))
    return blocks
