"""Pages generated from the repository at the start of every build (never committed, see .gitignore).

- ``api/``: one page per module with an ``__all__`` (``nl_api.write_pages``);
- ``benchmarks/``: one page per ``benchmarks/results/*.json`` (``benchmarks/report.py``'s
  ``render_pages``, the generator of README's figures);
- ``notebooks/``: the repository's ``notebooks/*.ipynb``, copied so that myst-nb executes and renders
  them (Sphinx reads sources only from ``docs/``).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import nl_api

ROOT = nl_api.ROOT


def write_benchmark_pages(srcdir: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location("nl_benchmarks_report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report.render_pages(srcdir / "benchmarks")


def copy_notebooks(srcdir: Path) -> list[Path]:
    out = srcdir / "notebooks"
    out.mkdir(exist_ok=True)
    sources = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for stale in set(out.glob("*.ipynb")) - {out / p.name for p in sources}:
        stale.unlink()
    for source in sources:
        target = out / source.name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    return [out / p.name for p in sources]


def _on_config_inited(app: Any, config: Any) -> None:
    srcdir = Path(app.srcdir)
    nl_api.write_pages(srcdir)
    write_benchmark_pages(srcdir)
    copy_notebooks(srcdir)


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _on_config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
