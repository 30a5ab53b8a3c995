"""The documentation site builds from scratch with zero warnings, and it shows what it should.

One build (``docs/_scripts/build.py``, exactly what ``make docs`` runs: ``-W --keep-going -n``,
every page re-read) into ``docs/_build``, then checks of its HTML: the API reference has an entry for
every name of every ``__all__``, every notebook ran and shows its outputs, the gallery's pictures
were drawn by this build, the benchmark pages exist, and a real headless Chromium opens the gallery
and an API page with every image loaded and no failed request. Screenshots of both are written to
``docs/_build/screenshots/`` to look at.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from chromium import Browser, chromium_binary
from doc_pages import DOCS, REPO
import nl_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
BUILD = DOCS / "_build"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@dataclass
class Site:
    returncode: int
    output: str
    warnings: str
    html: Path

    def page(self, name: str) -> str:
        return (self.html / name).read_text()


@pytest.fixture(scope="module")
def site() -> Site:
    done = subprocess.run([sys.executable, str(DOCS / "_scripts" / "build.py"), str(BUILD)], cwd=REPO,
                          capture_output=True, text=True, timeout=1700)
    warnings = (BUILD / "warnings.txt").read_text() if (BUILD / "warnings.txt").is_file() else "(no warnings file)"
    return Site(done.returncode, done.stdout + done.stderr, warnings, BUILD / "html")


def test_docs_build_with_zero_warnings(site):
    assert site.returncode == 0 and not site.warnings.strip(), (
        f"make docs failed (exit {site.returncode}); warnings:\n{site.warnings[-8000:]}\n{site.output[-4000:]}")


def test_api_reference_lists_every_public_name(site):
    """Each module's page has an entry (an HTML anchor) for every name of its ``__all__``."""
    missing = []
    for entry in nl_api.public_names():
        page = site.html / "api" / f"{entry.module}.html"
        if not page.is_file() or f'id="{entry.path}"' not in page.read_text():
            missing.append(entry.path)
    assert not missing, f"not in the API reference: {missing}"
    index = site.page("api/index.html")
    assert all(f"{module}.html" in index for module in nl_api.public_modules())


def test_every_notebook_ran_and_shows_its_outputs(site):
    assert NOTEBOOKS
    for notebook in NOTEBOOKS:
        html = site.page(f"notebooks/{notebook.stem}.html")
        assert html.count('class="cell_output') >= 1, f"{notebook.name}: no output rendered"
        assert "Traceback" not in html and 'class="output traceback' not in html, f"{notebook.name} shows an error"
    assert "same logits after reload" in site.page("notebooks/quickstart.html")  # a printed result, not the source
    assert "val accuracy:" in site.page("notebooks/quickstart.html")


def test_gallery_pictures_are_drawn_by_the_build(site):
    sources = re.findall(r"```\{image\} (\S+)", (DOCS / "gallery.md").read_text())
    assert len(sources) >= 9
    html = site.page("gallery.html")
    for source in sources:
        name = Path(source).name
        assert re.search(rf'<img[^>]+src="_images/{re.escape(name)}"', html), f"{name} is not on the gallery page"
        built = site.html / "_images" / name
        assert built.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and built.stat().st_size > 5000, name
    tracked = subprocess.run(["git", "ls-files", "docs"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert not [path for path in tracked if path.endswith((".png", ".jpg", ".svg"))], "committed images under docs/"


def test_benchmark_pages_show_every_result(site):
    index = site.page("benchmarks/index.html")
    for result in sorted((REPO / "benchmarks" / "results").glob("*.json")):
        page = site.page(f"benchmarks/{result.stem}.html")
        measured = json.loads(result.read_text())["machine"]["time_utc"][:10]
        assert f"Measured {measured}" in page, result.stem
        assert f"benchmarks/{result.stem}.py" in index


def test_every_guide_is_in_the_site(site):
    for page in sorted(DOCS.glob("*.md")):
        assert (site.html / f"{page.stem}.html").is_file(), f"{page.name} was not built (missing from a toctree?)"


@pytest.mark.parametrize("page", ["gallery.html", "api/nl_lightning.callbacks.html"])
def test_page_in_a_real_browser(site, page):
    binary = chromium_binary()
    assert binary, "no Chromium: `make setup` installs Debian's chromium (`make browser`), or set CHROMIUM=/path"
    shot = BUILD / "screenshots" / page.replace("/", "_").replace(".html", ".png")
    with Browser(binary) as browser:
        report = browser.open((site.html / page).as_uri(), screenshot=shot)
    assert report.title.endswith("nl_lightning 0.1.0") or "nl_lightning" in report.title, report.title
    assert not report.broken_images, f"images that did not load: {report.broken_images}"
    assert not report.failed_loads, report.failed_loads
    assert not report.script_errors, report.script_errors
    if page == "gallery.html":
        expected = len(re.findall(r"```\{image\}", (DOCS / "gallery.md").read_text()))
        drawn = [img for img in report.images if "/_images/" in img["src"]]
        assert len(drawn) == expected and all(img["width"] >= 300 for img in drawn), report.images
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
