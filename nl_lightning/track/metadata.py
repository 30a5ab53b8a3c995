"""Run metadata: what a run needs to be reproduced — code version, library versions, host, device, seed.

Pure Python: ``RunMetadata`` (a callback) adds the resolved config and sends the result to the
loggers as hyperparameters and as a ``run_metadata.json`` artifact.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "lightning", "nl-lightning", "torchmetrics")


def git_state(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``cwd`` (None outside a repo or without git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run_metadata(device: str | None = None, seed: int | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """Everything above as one JSON-serializable dict. ``seed`` defaults to Lightning's
    ``PL_GLOBAL_SEED`` (what ``seed_everything`` set), None when no seed was set."""
    if seed is None and os.environ.get("PL_GLOBAL_SEED", "").lstrip("-").isdigit():
        seed = int(os.environ["PL_GLOBAL_SEED"])
    return {
        "git": git_state(cwd),
        "versions": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device,
        "seed": seed,
    }


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a/b/c`` keys (what hyperparameter tables show best)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out
