"""The mechanisms that keep references honest, on a small Sphinx project (seconds, not the whole site).

- a reference to a name of ours that does not exist fails a ``-W -n`` build, in a guide and on an
  API page; a name that exists but is not public is accepted on API pages only;
- cross-links to PyTorch, Lightning, Optuna, LitServe and MLflow resolve with no network, through the
  inventories written from the installed packages, and a name those packages do not have fails;
- an optional guide's glob may match nothing, any other glob may not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from doc_pages import DOCS
import nl_inventories

pytestmark = pytest.mark.slow  # Sphinx builds (seconds each, with the inventories of torch, Lightning, ...)

CONF = f"""
import sys
sys.path.insert(0, {str(DOCS / "_ext")!r})
extensions = ["myst_parser", "sphinx.ext.autodoc", "nl_autodoc", "nl_inventories", "nl_optional"]
nitpicky = True
optional_docs = ["maybe*"]
"""


def build(tmp_path: Path, pages: dict[str, str]) -> tuple[int, str, str]:
    src = tmp_path / "src"
    (src / "api").mkdir(parents=True)
    (src / "conf.py").write_text(CONF)
    for name, text in pages.items():
        (src / name).write_text(textwrap.dedent(text))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-E", "-q",
                           "-w", str(tmp_path / "warnings.txt"), str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, (tmp_path / "warnings.txt").read_text(), str(out)


INDEX = """
    # Test

    ```{toctree}
    :glob:

    guide
    api/page
    maybe*
    ```
    """
API_PAGE = """
    # API

    ```{eval-rst}
    .. autofunction:: nl_lightning.nn.drop_path_schedule

    :class:`nl_lightning.data.cache.SampleCache` is internal; :class:`nl_lightning.data.cache.NoSuchCache` is not.
    ```
    """


def test_good_references_build_clean(tmp_path):
    code, warnings, out = build(tmp_path, {"index.md": INDEX, "api/page.md": API_PAGE.replace(
        " is internal; :class:`nl_lightning.data.cache.NoSuchCache` is not.", " is internal."), "guide.md": """
        # Guide

        {py:func}`~nl_lightning.nn.drop_path_schedule`, {py:class}`torch.nn.Module`,
        {py:class}`lightning.pytorch.callbacks.ModelPruning`, {py:class}`optuna.study.Study`,
        {py:class}`litserve.LitAPI`, {py:class}`mlflow.MlflowClient`, {py:class}`L.Trainer`.
        """})
    assert code == 0 and warnings == "", warnings
    html = (Path(out) / "guide.html").read_text()
    torch_version = nl_inventories.version_of(next(s for s in nl_inventories.SITES if s.key == "torch"))
    minor = ".".join(torch_version.split(".")[:2])
    for url in (f"https://docs.pytorch.org/docs/{minor}/generated/torch.nn.Module.html#torch.nn.Module",
                "https://lightning.ai/docs/pytorch/stable/api/lightning.pytorch.callbacks.ModelPruning.html",
                "reference/generated/optuna.study.Study.html#optuna.study.Study",
                "https://github.com/Lightning-AI/LitServe/blob/v",
                "mlflow.client.html#mlflow.client.MlflowClient", 'href="api/page.html#nl_lightning.nn.drop_path_schedule"',
                "api/lightning.pytorch.trainer.trainer.Trainer.html"):  # L.Trainer: `import lightning as L`
        assert url in html, url


def test_missing_names_fail_the_build(tmp_path):
    code, warnings, _ = build(tmp_path, {"index.md": INDEX.replace("    maybe*", "    maybe*\n    other*"), "api/page.md": API_PAGE,
                                         "guide.md": """
        # Guide

        {py:class}`nl_lightning.nn.NoSuchBlock`, {py:class}`nl_lightning.data.cache.SampleCache`,
        {py:class}`torch.nn.NoSuchModule`.
        """})
    assert code != 0
    for expected in ("nl_lightning.nn.NoSuchBlock", "torch.nn.NoSuchModule", "nl_lightning.data.cache.NoSuchCache",
                     "'other*' didn't match"):
        assert expected in warnings, (expected, warnings)
    guide_warnings = [line for line in warnings.splitlines() if "guide.md" in line]
    assert any("SampleCache" in line for line in guide_warnings), warnings  # internal: fine on API pages only
    assert "maybe*" not in warnings


def read_inventory(key: str, tmp_path: Path) -> dict[str, str]:
    """{"role name": uri} of the inventory written for one site, read back from its file."""
    site = next(s for s in nl_inventories.SITES if s.key == key)
    path = nl_inventories.write_inventory(tmp_path / f"{key}.inv", key, "x", nl_inventories.collect(site))
    header, _, body = path.read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2")
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        name, role, _, uri, _ = line.split(" ")
        entries[f"{role} {name}"] = uri
    return entries


def test_torch_inventory_maps_public_and_defining_names(tmp_path):
    torch = read_inventory("torch", tmp_path)
    assert torch["py:class torch.nn.Module"] == "generated/torch.nn.Module.html#torch.nn.Module"
    # autodoc writes a base class by where it is defined: the same page
    assert torch["py:class torch.nn.modules.module.Module"] == "generated/torch.nn.Module.html#torch.nn.Module"
    assert torch["py:method torch.nn.Module.forward"].endswith("torch.nn.Module.html#torch.nn.Module.forward")
    assert torch["py:class torch.Tensor"] == "tensors.html#torch.Tensor"
    assert "py:function torch.nn.functional.scaled_dot_product_attention" in torch
    assert not any("NoSuch" in key for key in torch)


def test_python_inventory_keeps_equal_values_apart(tmp_path):
    """``None`` and ``os.path.altsep`` are the same object: each keeps its own page."""
    python = read_inventory("python", tmp_path)
    assert python["py:data None"] == "library/constants.html#None"
    assert python["py:data os.path.altsep"] == "library/os.path.html#os.path.altsep"
    assert python["py:class int"] == "library/functions.html#int"
    assert python["py:class pathlib.Path"] == "library/pathlib.html#pathlib.Path"
