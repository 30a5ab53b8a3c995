"""``Cancellations``: generations whose client went away, from the HTTP process to the inference worker.

LitServe's queue only carries requests to workers, so a disconnect is marked as an empty file
named by the request's id in the server's state folder; the worker decoding it sees the file at its
next step, drops the sequence (its batch slot frees at once) and removes the file. A mark for a
generation that had already finished is swept after ``STALE_AFTER`` seconds.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

STALE_AFTER = 60.0
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Cancellations:
    """The ``cancel/`` folder of one server's state folder."""

    def __init__(self, state_dir: str | Path) -> None:
        self.folder = Path(state_dir) / "cancel"
        self._swept = time.monotonic()

    def mark(self, uid: str) -> None:
        """Ask the worker decoding ``uid`` to stop (HTTP process)."""
        if _ID.match(uid):
            self.folder.mkdir(exist_ok=True)
            (self.folder / uid).touch()

    def take(self, uids: Iterable[str]) -> set[str]:
        """Which of ``uids`` (this worker's running generations) were cancelled; their marks are removed."""
        try:
            marked = set(os.listdir(self.folder))
        except FileNotFoundError:
            return set()
        found = marked.intersection(uids)
        for uid in found:
            (self.folder / uid).unlink(missing_ok=True)
        if time.monotonic() - self._swept > STALE_AFTER:
            self._sweep(marked - found)
        return found

    def _sweep(self, names: set[str]) -> None:
        self._swept, cutoff = time.monotonic(), time.time() - STALE_AFTER
        for name in names:
            path = self.folder / name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue
