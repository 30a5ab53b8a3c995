"""Rewrite the benchmark sections of README and docs/*.md from ``benchmarks/results/*.json``: no figure by hand.

    python benchmarks/report.py           # rewrite README.md and docs/*.md in place
    python benchmarks/report.py --check   # exit 1 if one differs from what the results give

A document marks each section ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; the text between
is replaced by ``render(result)`` from ``benchmarks/NAME.py`` applied to ``results/NAME.json``,
followed by the line naming the machine, the command and the result file.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import RESULTS_DIR, machine_line, read_result  # noqa: E402

README = HERE.parent / "README.md"
DOCUMENTS = [README, *sorted((HERE.parent / "docs").glob("*.md"))]
SECTION = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def render_section(name: str) -> str:
    if not (RESULTS_DIR / f"{name}.json").is_file():
        return f"_No result yet: run `python benchmarks/{name}.py` (writes `benchmarks/results/{name}.json`)._\n"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = read_result(name)
    return module.render(record["figures"]).rstrip("\n") + "\n\n" + machine_line(record) + "\n"


def rewrite(text: str) -> str:
    return SECTION.sub(lambda m: m.group(1) + render_section(m.group("name")) + m.group(4), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the documents are up to date")
    parser.add_argument("--readme", type=Path, default=None, help="one document instead of README.md and docs/*.md")
    args = parser.parse_args()
    stale = []
    for document in [args.readme] if args.readme else DOCUMENTS:
        text = document.read_text()
        new = rewrite(text)
        if args.check:
            if new != text:
                print(f"{document} is out of date with benchmarks/results/: run python benchmarks/report.py")
                stale.append(document)
            continue
        if new != text:
            document.write_text(new)
            print(f"rewrote {len(SECTION.findall(text))} section(s) of {document}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
