"""Build the documentation site the one way it is built: ``make docs`` and ``tests/docs/`` call this.

    python docs/_scripts/build.py [BUILD_DIR]      # default docs/_build: html/, doctrees/, warnings.txt

A fresh build every time (``-E -a``: Sphinx re-reads every page, so no warning hides in a cached
page), warnings as errors (``-W --keep-going``: every warning is reported, then the build fails),
nitpicky references (``-n``: a reference to a name that does not exist is a warning). The warnings
are also written to ``BUILD_DIR/warnings.txt``. Exit status: Sphinx's.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]


def sphinx_args(build_dir: Path) -> list[str]:
    return ["-b", "html", "-W", "--keep-going", "-n", "-E", "-a", "-q", "-d", str(build_dir / "doctrees"),
            "-w", str(build_dir / "warnings.txt"), str(DOCS), str(build_dir / "html")]


def main(argv: list[str]) -> int:
    from sphinx.cmd.build import build_main

    build_dir = Path(argv[0]).resolve() if argv else DOCS / "_build"
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "warnings.txt").unlink(missing_ok=True)
    code = build_main(sphinx_args(build_dir))
    print(f"{'built' if code == 0 else 'FAILED'}: {build_dir / 'html' / 'index.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
