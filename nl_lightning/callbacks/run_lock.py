"""``RunLock``: refuse to train into a run folder that a live run is writing.

Versioned run folders (``runs/<name>/version_<N>``) keep runs apart, but two fits started at the
same moment can pick the same version, and an explicit ``ModelCheckpoint(dirpath=...)`` or
logger ``version`` can point two runs at one folder: their ``best-*.ckpt`` / ``last.ckpt`` would
then mix. At fit start, rank 0 creates ``.nl_lightning.lock`` (pid, host) atomically in the log
folder and in every checkpoint folder; a lock held by a live process is an error, a stale one
(its process is gone: killed, crashed) is taken over with a warning. ``nl-lightning fit`` adds
this callback to every run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from nl_lightning._process import pid_alive
from nl_lightning.errors import NLUserError
from nl_lightning.track.loggers import run_dir

LOCK_NAME = ".nl_lightning.lock"


class RunDirInUseError(NLUserError, FileExistsError):
    """Another live run is writing into the same run folder."""


def acquire(folder: str | Path) -> Path:
    """Create ``folder/.nl_lightning.lock`` for this process; raise if a live process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder.get("pid") == os.getpid() and holder.get("host") == record["host"]:
                return path  # this process already holds it (a second fit in the same process)
            if _alive(holder):
                raise RunDirInUseError(
                    f"{folder} is being written by another run (pid {holder.get('pid')} on {holder.get('host')}): "
                    "two runs in one folder would overwrite each other's checkpoints. Give this run its own "
                    "folder (leave ModelCheckpoint.dirpath and the logger version unset), or stop the other run."
                ) from None
            rank_zero_warn(f"{path}: taking over a stale lock of pid {holder.get('pid')} (that run is gone).")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return path
    raise RunDirInUseError(f"Could not lock {folder}: another process keeps taking the lock.")


def release(path: Path) -> None:
    """Remove the lock if this process holds it."""
    holder = _read(path)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(holder: dict) -> bool:
    """A lock on another host is assumed live; on this host, alive means the pid exists."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False  # unreadable (a half-written lock): stale
    if holder.get("host") != socket.gethostname():
        return True
    return pid_alive(pid)


class RunLock(L.Callback):
    """Lock the run's log folder and checkpoint folders for the duration of ``fit`` (rank 0)."""

    def __init__(self) -> None:
        self._held: list[Path] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        folders = {Path(cb.dirpath).resolve() for cb in trainer.checkpoint_callbacks
                   if isinstance(cb, ModelCheckpoint) and cb.dirpath}
        if trainer.loggers:  # not trainer.log_dir: it broadcasts, and only rank 0 is here (a DDP hang)
            folders.add(run_dir(trainer.loggers, trainer.default_root_dir).resolve())
        for folder in sorted(folders):
            self._held.append(acquire(folder))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        while self._held:
            release(self._held.pop())

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")
