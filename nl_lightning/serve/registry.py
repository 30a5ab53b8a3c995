"""``ModelRegistry``: the versions of one model on disk, as Triton's model repository lays them out.

``model_dir`` holds one entry per version, named by the version: a sub-folder (a run folder with
checkpoints, a folder with a ``.ckpt``, or an export folder with ``manifest.json``) or a ``.ckpt``
file (``3.ckpt`` is version ``3``). Lightning's own ``runs/<name>/`` (``version_0/``,
``version_1/``...) is such a folder. Versions sort naturally (``2 < 10``); the last is the newest.
A checkpoint file, an export folder or one run (with ``checkpoints/`` or ``export/``) is one version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nl_lightning.errors import CheckpointError, MissingFileError, NLUserError
from nl_lightning.export.manifest import MANIFEST_NAME, read_manifest

#: ``onnx_format: auto`` takes the first artifact here that passed its parity check.
ONNX_PREFERENCE = ("onnx_optimized", "onnx", "onnx_int8_dynamic", "onnx_int8_static")


class VersionNotFoundError(NLUserError, LookupError):
    """A version name that ``model_dir`` does not hold."""


@dataclass(frozen=True)
class ModelSource:
    """One version, resolved to what a backend loads: a checkpoint file or an ONNX artifact."""

    version: str
    backend: Literal["torch", "onnx"]
    path: Path
    """The checkpoint (torch) or the ONNX file (onnx)."""
    manifest: dict[str, Any] | None = None
    onnx_format: str | None = None


class ModelRegistry:
    """Lists and resolves the versions in ``root``; reads the disk on every call, so versions added
    while the server runs are found by ``/admin/reload``."""

    def __init__(self, root: str | Path, backend: str = "auto", onnx_format: str = "auto") -> None:
        self.root, self.backend, self.onnx_format = Path(root), backend, onnx_format
        if not self.root.exists():
            raise MissingFileError(
                f"model_dir {str(self.root)!r} does not exist. Point it at a folder of versions (1/, 2/, or "
                "a runs/<name> folder of `nl-lightning fit`), a checkpoint, or an export folder."
            )
        if (self.root / ".metadata").is_file():
            from nl_lightning.models.checkpoint import CONSOLIDATE  # Lightning: only on this path

            raise CheckpointError(
                f"model_dir {str(self.root)!r} is a sharded (distributed) checkpoint, which a server does not load: "
                f"consolidate it once into one file and serve that: {CONSOLIDATE.format(dir=self.root)}"
            )

    def versions(self) -> list[str]:
        if _is_single(self.root):
            return [self.root.stem if self.root.is_file() else self.root.name]
        names = [p.stem if p.is_file() else p.name for p in self._entries()]
        if not names:
            raise MissingFileError(
                f"model_dir {str(self.root)!r} holds no versions: add one sub-folder (or .ckpt file) per "
                "version, e.g. 1/last.ckpt, 2/export/manifest.json."
            )
        return sorted(names, key=natural_key)

    def newest(self) -> str:
        return self.versions()[-1]

    def source(self, version: str | None = None) -> ModelSource:
        """Resolve ``version`` (None = newest) to the file its backend loads."""
        version = self.newest() if version is None else str(version)
        available = self.versions()
        if version not in available:
            raise VersionNotFoundError(
                f"Version {version!r} is not in model_dir {str(self.root)!r}; available: {', '.join(available)}."
            )
        path = self.root if _is_single(self.root) else self._path_of(version)
        return resolve_source(version, path, self.backend, self.onnx_format)

    def _entries(self) -> list[Path]:
        return [p for p in self.root.iterdir()
                if not p.name.startswith((".", "_")) and (p.is_dir() or p.suffix == ".ckpt")]

    def _path_of(self, version: str) -> Path:
        return next(p for p in self._entries() if (p.stem if p.is_file() else p.name) == version)


def resolve_source(version: str, path: Path, backend: str = "auto", onnx_format: str = "auto") -> ModelSource:
    """A checkpoint for ``torch``, the manifest's ONNX artifact for ``onnx``; ``auto`` prefers a checkpoint."""
    manifest_dir = _manifest_dir(path)
    has_checkpoint = path.is_file() or (path.is_dir() and any(path.rglob("*.ckpt")))
    if backend == "torch" or (backend == "auto" and has_checkpoint):
        if not has_checkpoint:
            raise MissingFileError(f"Version {version!r} ({path}) has no checkpoint for backend='torch'.")
        from nl_lightning.models.runs import find_checkpoint  # torch only: nl_lightning.models imports Lightning

        return ModelSource(version, "torch", find_checkpoint(path))
    if manifest_dir is None and has_checkpoint:  # backend='onnx' on a version that has a checkpoint only
        raise MissingFileError(
            f"Version {version!r} ({path}) has no ONNX export for backend='onnx' (no {MANIFEST_NAME} in it or its "
            f"export/), only a checkpoint. Export it once, `nl-lightning export --ckpt_path {path}` (it writes "
            "export/ beside checkpoints/), or serve the checkpoint with backend: auto or torch."
        )
    if manifest_dir is None:
        raise MissingFileError(
            f"Version {version!r} ({path}) has neither a checkpoint nor an export manifest "
            f"({MANIFEST_NAME}, in the folder or its export/); run `nl-lightning export` on it."
        )
    manifest = read_manifest(manifest_dir)
    artifact = pick_artifact(manifest, onnx_format, manifest_dir)
    return ModelSource(version, "onnx", manifest_dir / artifact["files"][0]["path"], manifest, artifact["format"])


def pick_artifact(manifest: dict[str, Any], onnx_format: str, where: Path) -> dict[str, Any]:
    """The manifest entry to serve: ``onnx_format``, or for ``auto`` the first of ``ONNX_PREFERENCE``
    that passed its parity check."""
    by_format = {a["format"]: a for a in manifest.get("artifacts", []) if a["format"] in ONNX_PREFERENCE}
    if onnx_format != "auto":
        if onnx_format not in by_format:
            raise MissingFileError(
                f"onnx_format={onnx_format!r} is not in the export at {where}; it has {sorted(by_format)}. "
                "Pick one of those or export it (`nl-lightning export --formats [...]`)."
            )
        return by_format[onnx_format]
    for name in ONNX_PREFERENCE:
        if name in by_format and by_format[name].get("parity_ok", True):
            return by_format[name]
    raise MissingFileError(
        f"The export at {where} has no ONNX artifact that passed its parity check ({sorted(by_format)} "
        "present); re-export with formats [onnx, onnx_optimized], or set onnx_format explicitly."
    )


def natural_key(name: str) -> list[Any]:
    """``"v10"`` sorts after ``"v2"``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def _manifest_dir(path: Path) -> Path | None:
    for folder in (path, path / "export"):
        if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
            return folder
    return None


def _is_single(root: Path) -> bool:
    """A checkpoint file, an export folder, or one run (``checkpoints/`` or ``export/`` in it)."""
    return root.is_file() or _manifest_dir(root) is not None or (root / "checkpoints").is_dir()
