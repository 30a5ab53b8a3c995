"""Run directories: each ``fit`` writes ``runs/<name>/version_<N>/`` (logs, ``config.yaml``,
``checkpoints/``), so runs never overwrite each other; commands that take a checkpoint also take
a run folder and use the newest ``last.ckpt`` in it. Evaluations (``validate`` / ``test``) log
into the run of the checkpoint they evaluate (``<run>/test/``), never as a new version."""

from __future__ import annotations

from pathlib import Path

from nl_lightning.errors import CheckpointError


def run_of_checkpoint(ckpt_path: str | Path | None) -> Path | None:
    """The run folder of a checkpoint in ``<run>/checkpoints/``, else None."""
    if not ckpt_path:
        return None
    folder = Path(ckpt_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" and Path(ckpt_path).exists() else None


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a checkpoint file or a sharded (DCP) checkpoint directory; for a run
    folder (``runs/char_lm`` or ``runs/char_lm/version_3``), its newest ``last.ckpt``."""
    path = Path(path)
    if path.is_file() or not path.is_dir() or (path / ".metadata").is_file():
        return path  # read_checkpoint reports missing and sharded paths with their own messages
    candidates = [p for p in path.rglob("last*.ckpt") if p.is_file() or (p / ".metadata").is_file()]
    candidates = candidates or [p for p in path.rglob("*.ckpt") if p.is_file() or (p / ".metadata").is_file()]
    if not candidates:
        raise CheckpointError(
            f"{path} is a folder with no checkpoint in it (looked for last.ckpt and *.ckpt below it). "
            "Pass a .ckpt file, or the run folder of a finished `nl-lightning fit` (runs/<name>)."
        )
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, str(p)))
