"""--ckpt_path resolution: ``last`` and run folders mean the newest last.ckpt across versioned runs."""

from __future__ import annotations

import os

import pytest

from nl_lightning.models import CheckpointError
from nl_lightning.resume import resolve_ckpt_path


def _touch(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04")
    os.utime(path, ns=(mtime, mtime))
    return path


def test_last_is_the_newest_last_ckpt_of_any_version(tmp_path):
    root = tmp_path / "runs" / "char_lm"
    _touch(root / "version_0" / "checkpoints" / "last.ckpt", 3_000_000_000)
    newest = _touch(root / "version_1" / "checkpoints" / "last.ckpt", 9_000_000_000)
    _touch(root / "version_2" / "checkpoints" / "last.ckpt", 5_000_000_000)  # a later, shorter run stopped earlier
    _touch(root / "version_1" / "checkpoints" / "best-step=100.ckpt", 9_500_000_000)
    assert resolve_ckpt_path("last", str(root)) == str(newest)
    assert resolve_ckpt_path(str(root), None) == str(newest)  # a run folder means the same
    assert resolve_ckpt_path(str(root / "version_0"), None) == str(root / "version_0" / "checkpoints" / "last.ckpt")


def test_lightning_keywords_pass_through(tmp_path):
    for value in ("best", "hpc", "registry", "registry:model:latest"):
        assert resolve_ckpt_path(value, str(tmp_path)) == value


def test_last_without_any_run_names_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"--ckpt_path last: no last\.ckpt under .*runs.*default_root_dir"):
        resolve_ckpt_path("last", str(tmp_path / "runs"))
