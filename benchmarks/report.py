"""Rewrite the benchmark figures of README and docs/*.md from ``benchmarks/results/*.json``: no figure by hand.

    python benchmarks/report.py               # rewrite README.md and docs/*.md in place
    python benchmarks/report.py --check       # exit 1 if one differs from what the results give
    python benchmarks/report.py --pages DIR   # write the docs site's benchmark pages into DIR
    python benchmarks/report.py --stale       # list results whose measured code changed; exit 1 if any

Each result records the SHA-256 of every file of the code it measured (``_results.code_files``); a
figure whose code changed since is shown with a **Stale** note, and the headline row says so.

A document marks each section ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; the text between
is replaced by ``render(result)`` from ``benchmarks/NAME.py`` applied to ``results/NAME.json``,
followed by the line naming the machine, the command and the result file. The table between
``<!-- bench-headlines -->`` and ``<!-- /bench-headlines -->`` has one row per result: each script's
``headline(result)``. The docs site (``make docs``) shows every section in full, one page per
script, through :func:`render_pages`.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import RESULTS_DIR, changed_code, machine_line, read_result  # noqa: E402

README = HERE.parent / "README.md"
DOCUMENTS = [README, *sorted((HERE.parent / "docs").glob("*.md"))]
SECTION = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)
HEADLINES = re.compile(r"(<!-- bench-headlines -->\n)(?P<body>.*?)(<!-- /bench-headlines -->)", re.S)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_section(name: str) -> str:
    if not (RESULTS_DIR / f"{name}.json").is_file():
        return f"_No result yet: run `python benchmarks/{name}.py` (writes `benchmarks/results/{name}.json`)._\n"
    record = read_result(name)
    return (stale_note(name, record) + _script(name).render(record["figures"]).rstrip("\n") + "\n\n"
            + machine_line(record) + "\n")


def stale_note(name: str, record: dict) -> str:
    """A warning above figures whose measured code changed since (or that predate code hashes)."""
    changed = changed_code(record)
    if changed is None:
        return (f"> **Unverified:** this result predates code hashes; rerun `python benchmarks/{name}.py` to "
                "tie it to the code it measures.\n\n")
    if not changed:
        return ""
    shown = ", ".join(f"`{f}`" for f in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return (f"> **Stale:** the code measured here changed since ({shown}); rerun "
            f"`python benchmarks/{name}.py`.\n\n")


def freshness(name: str) -> str:
    """'fresh', 'stale' or 'unverified' for the headline table and ``--stale``."""
    changed = changed_code(read_result(name))
    return "unverified" if changed is None else "stale" if changed else "fresh"


def result_names() -> list[str]:
    """Every benchmark that has a result file, in file-name order."""
    return sorted(p.stem for p in RESULTS_DIR.glob("*.json") if (HERE / f"{p.stem}.py").is_file())


def render_headlines() -> str:
    """One row per result: the script's ``headline(figures)``, and where and when it was measured."""
    rows = ["| benchmark | measured | result | machine |", "|---|---|---|---|"]
    for name in result_names():
        record, script = read_result(name), _script(name)
        what, figure = script.headline(record["figures"]) if hasattr(script, "headline") else ("see its page", "")
        m, state = record["machine"], freshness(name)
        mark = "" if state == "fresh" else f" **({state}: rerun)**"
        rows.append(f"| `benchmarks/{name}.py` | {what} | {figure}{mark} | {m['time_utc'][:10]}, {m['cores']}-core "
                    f"{m['cpu']}, {m['torch_threads']} thread(s) |")
    return "\n".join(rows) + "\n"


def rewrite(text: str) -> str:
    text = SECTION.sub(lambda m: m.group(1) + render_section(m.group("name")) + m.group(4), text)
    return HEADLINES.sub(lambda m: m.group(1) + render_headlines() + m.group(3), text)


def render_pages(out_dir: Path) -> list[Path]:
    """The docs site's benchmark pages: ``index.md`` (benchmarks/README.md up to its first script
    section, then the headline table) and ``<name>.md`` per script (its README.md section, then its
    figures). Files whose text is unchanged are left alone; pages of removed results are deleted."""
    intro, sections = _readme_sections((HERE / "README.md").read_text())
    names = sorted(set(result_names()) | set(sections))
    pages = {"index": "\n".join([intro.rstrip(), "", "## Headline figures", "", render_headlines(),
                                  "```{toctree}", ":maxdepth: 1", "", *names, "```", ""])}
    for name in names:
        body = sections.get(name, f"# `{name}.py`\n")
        figures = f"\n\n## Results\n\n{render_section(name)}" if hasattr(_script(name), "render") else "\n"
        pages[name] = body.rstrip() + figures  # a tool that runs other benchmarks (isa_mask.py) has none
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in set(out_dir.glob("*.md")) - {out_dir / f"{n}.md" for n in pages}:
        stale.unlink()
    written = []
    for name, text in pages.items():
        path = out_dir / f"{name}.md"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _readme_sections(text: str) -> tuple[str, dict[str, str]]:
    """benchmarks/README.md: its introduction and, per script, its ``## `NAME.py` ...`` section as a page."""
    parts = re.split(r"^## ", text, flags=re.M)
    intro, sections = parts[0], {}
    for part in parts[1:]:
        match = re.match(r"`(?P<name>[\w-]+)\.py`", part)
        if match:
            sections[match.group("name")] = "# " + part
        else:
            intro += "## " + part
    return intro, sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the documents are up to date")
    parser.add_argument("--readme", type=Path, default=None, help="one document instead of README.md and docs/*.md")
    parser.add_argument("--pages", type=Path, help="write the docs site's benchmark pages into this folder")
    parser.add_argument("--stale", action="store_true", help="list results whose measured code changed since")
    args = parser.parse_args()
    if args.stale:
        states = {name: freshness(name) for name in result_names()}
        for name, state in states.items():
            print(f"{state:10} benchmarks/{name}.py")
        return 1 if any(s != "fresh" for s in states.values()) else 0
    if args.pages:
        print(f"wrote {len(render_pages(args.pages))} page(s) into {args.pages}")
        return 0
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
            print(f"rewrote {len(SECTION.findall(text)) + len(HEADLINES.findall(text))} section(s) of {document}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
