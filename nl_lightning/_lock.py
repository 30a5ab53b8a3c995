"""A folder lock for one live writer: ``.nl_lightning.lock`` (pid, host), created atomically.

A lock held by a live process refuses a second writer; a stale one (its process is gone: killed,
crashed) is taken over with a warning. ``RunLock`` holds it on a fit's run folder and checkpoint
folders, ``PredictionWriter`` on its output folder. No Lightning import, so any module can use it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

from nl_lightning._process import pid_alive
from nl_lightning.errors import NLUserError

__all__ = ["LOCK_NAME", "RunDirInUseError", "acquire", "release"]

#: The lock file a live writer holds in its folder (JSON: pid, host, start time).
LOCK_NAME = ".nl_lightning.lock"


class RunDirInUseError(NLUserError, FileExistsError):
    """Another live process (a fit, a prediction job) is writing into the same folder."""


FIT_HINT = ("two runs in one folder would overwrite each other's checkpoints. Give this run its own folder (leave "
            "ModelCheckpoint.dirpath and the logger version unset), or stop the other run.")


def acquire(folder: str | Path, hint: str = FIT_HINT) -> Path:
    """Create ``folder/.nl_lightning.lock`` for this process; raise if a live process holds it
    (``hint``: why that is refused and what to do, the end of the message)."""
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
                    f"{hint}"
                ) from None
            warnings.warn(f"{path}: taking over a stale lock of pid {holder.get('pid')} (that run is gone).", stacklevel=2)
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
