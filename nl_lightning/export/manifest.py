"""The export manifest: one JSON file that says what was written and how faithful it is.

Per artifact: its files and sizes, the tolerance it was checked against and the measured errors at
every (batch, seq) pair; plus the opset, the input spec and the library versions.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from nl_lightning.export.atomic import write_json

MANIFEST_NAME = "manifest.json"
_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "torchao", "nl-lightning")


def file_entries(paths: Sequence[Path], root: Path) -> list[dict[str, Any]]:
    return [{"path": str(Path(p).relative_to(root)), "bytes": Path(p).stat().st_size} for p in paths]


def artifact_entry(
    fmt: str, paths: Sequence[Path], root: Path, tolerance: dict[str, Any] | None, parity: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    files = file_entries(paths, root)
    entry: dict[str, Any] = {"format": fmt, "files": files, "bytes": sum(f["bytes"] for f in files)}
    if parity is not None:
        entry["tolerance"] = tolerance
        entry["parity"] = parity
        entry["max_abs_err"] = max(r["max_abs_err"] for r in parity)
        entry["parity_ok"] = all(r["ok"] for r in parity)
    return entry


def build_manifest(
    artifacts: list[dict[str, Any]], input_spec: dict[str, Any], opset: int | None, source: str | None = None,
) -> dict[str, Any]:
    return {
        "manifest_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": source,
        "opset": opset,
        "input": input_spec,
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in _PACKAGES}},
        "artifacts": artifacts,
    }


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    return write_json(Path(out_dir) / MANIFEST_NAME, manifest)


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No export manifest at {path}; run `nl-lightning export` or ExportCallback first.")
    return json.loads(path.read_text(encoding="utf-8"))


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
