"""The dependency ranges pyproject.toml declares: floors CI installs (.ci/floors.py), bad releases excluded."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("floors", ROOT / ".ci" / "floors.py")
floors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(floors)
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(name: str) -> Requirement:
    return next(Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == name)


def test_floor_pins_the_lower_bound_and_keeps_extras():
    assert floors.floor("jsonargparse[signatures]>=4.39") == "jsonargparse[signatures]==4.39"
    assert floors.floor("lightning>=2.6.4,<2.7") == "lightning==2.6.4"
    assert floors.floor("torch-tensorrt") == "torch-tensorrt"  # no lower bound: left to the resolver
    pins = floors.requirements(["data"])
    assert "lightning==2.6.4" in pins and "h5py==3.10" in pins
    assert not [p for p in pins if p.startswith("torch==") or p.startswith("torch>")]  # torch: the CPU wheel


def test_malicious_lightning_releases_are_excluded():
    lightning = _requirement("lightning").specifier
    assert "2.6.2" not in lightning and "2.6.3" not in lightning
    assert "2.6.4" in lightning


def test_jsonargparse_floor_fits_beside_litgpt():
    """litgpt pins jsonargparse<=4.41; our floor (what the floors job tests) must be at or under it."""
    jsonargparse = _requirement("jsonargparse").specifier
    assert "4.41.0" in jsonargparse and "4.39.0" in jsonargparse
