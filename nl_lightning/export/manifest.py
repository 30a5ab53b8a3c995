"""The export manifest: one JSON file that says what was written and how faithful it is.

Per artifact: its files with sizes and SHA-256, the tolerance it was checked against, the measured
errors at every (batch, seq) pair and, for INT8, the agreement with eager on real batches; plus
the source checkpoint and its SHA-256, the opset, the model's input (``ModelSignature.manifest_input``),
the library versions and the exporting CPU's instruction sets (INT8 speed and its recipe depend on them).
``read_manifest`` checks every file against its recorded hash, so a folder whose files come
from different exports (or were edited) is refused, naming the file.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

from nl_lightning._io import file_sha256, path_sha256, write_json
from nl_lightning.errors import MissingFileError, NLUserError
from nl_lightning.export.isa import cpu_isa

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "torchao", "nl-lightning")


class ManifestError(NLUserError, ValueError):
    """A manifest that is unreadable, malformed, or does not match the files beside it."""


def file_entries(paths: Sequence[Path], root: Path) -> list[dict[str, Any]]:
    return [{"path": Path(p).relative_to(root).as_posix(), "bytes": Path(p).stat().st_size,
             "sha256": file_sha256(p)} for p in paths]


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
    artifacts: list[dict[str, Any]], model_input: dict[str, Any], opset: int | None, source: str | None = None,
    source_sha256: str | None = None,
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": source,
        "source_sha256": source_sha256,
        "opset": opset,
        "input": model_input,
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in _PACKAGES}},
        "isa": cpu_isa(),
        "artifacts": artifacts,
    }


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    return write_json(Path(out_dir) / MANIFEST_NAME, manifest)


def read_manifest(path: str | Path, verify: bool = True, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The manifest of an export folder (or the ``manifest.json`` path), checked against its files.

    ``verify``: every listed file must exist with the recorded size and SHA-256.
    ``checkpoint``: also require that the export was made from this checkpoint (by SHA-256).
    Raises ``ManifestError`` naming the first file that does not match.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise MissingFileError(f"No export manifest at {path}; run `nl-lightning export` or ExportCallback first.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path} is not valid JSON ({err}); re-run the export.") from None
    entries = _file_list(manifest, path, verify)
    if verify:
        for entry in entries:
            _verify_file(path.parent, entry, path)
    if checkpoint is not None:
        digest = path_sha256(checkpoint)
        if manifest.get("source_sha256") != digest:
            raise ManifestError(
                f"{path} was not exported from {checkpoint}: its source_sha256 is {manifest.get('source_sha256')}, "
                f"the checkpoint's is {digest}. Re-export from this checkpoint."
            )
    return manifest


def listed_files(manifest: dict[str, Any]) -> set[str]:
    """Relative paths of every artifact file and the tokenizer's, plus ``manifest.json`` itself."""
    return {f["path"] for f in _entries(manifest)} | {MANIFEST_NAME}


def _entries(manifest: dict[str, Any]) -> list[Any]:
    """Every file entry: the artifacts', then the tokenizer's (an LM's ``tokenizer/`` folder)."""
    tokenizer = manifest.get("tokenizer")
    extra = tokenizer.get("files", []) if isinstance(tokenizer, dict) else []
    return [f for a in manifest.get("artifacts", []) for f in a.get("files", [])] + list(extra)


def _file_list(manifest: Any, path: Path, verify: bool) -> list[dict[str, Any]]:
    """The file entries, checked for shape: relative paths inside the folder only."""
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        raise ManifestError(f"{path} has no 'artifacts' list; it is not an nl_lightning export manifest.")
    if not verify:
        return []
    if manifest.get("manifest_version", 1) < MANIFEST_VERSION:
        raise ManifestError(
            f"{path} has manifest_version {manifest.get('manifest_version', 1)}, which records no checksums, so "
            "its files cannot be verified. Re-export with this version of nl_lightning (or read it with verify=False)."
        )
    entries = _entries(manifest)
    for entry in entries:
        name = entry.get("path") if isinstance(entry, dict) else None
        pure = PurePosixPath(name) if isinstance(name, str) else None
        if pure is None or pure.is_absolute() or ".." in pure.parts or not name or "\\" in name:
            raise ManifestError(f"{path} lists a file {name!r} outside its folder; refusing to read it.")
        if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
            raise ManifestError(f"{path}: the entry for {name} has no sha256 / bytes; re-run the export.")
    return entries


def _verify_file(root: Path, entry: dict[str, Any], manifest_path: Path) -> None:
    file = root / entry["path"]
    if not file.is_file():
        raise ManifestError(f"{file} is listed in {manifest_path} but missing; re-run the export.")
    size = file.stat().st_size
    digest = file_sha256(file) if size == entry["bytes"] else None
    if digest != entry["sha256"]:
        found = f"{size} bytes" if digest is None else f"sha256 {digest[:12]}…"
        raise ManifestError(
            f"{file} does not match {manifest_path} (recorded {entry['bytes']} bytes, sha256 "
            f"{entry['sha256'][:12]}…; found {found}): the folder holds files from another export, or they "
            "were changed. Re-run the export."
        )


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
