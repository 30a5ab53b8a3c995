"""``Rollout``: which version is live, its history (for rollback), and each worker's acknowledgement.

LitServe's inference workers are separate processes, so the live version is a small JSON file in
the server's state folder (replaced atomically), and every worker reports what it serves in a
file of its own. ``/admin/reload`` writes a new state and returns only when every worker has
switched; a version that fails to load in any worker is rolled back before the call returns.
Admin calls are serialized with ``flock`` (several HTTP processes may receive them).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nl_lightning._io import write_json
from nl_lightning.errors import NLUserError

LIVE_FILE = "live.json"


class RolloutError(NLUserError, RuntimeError):
    """A switch that did not happen; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LiveState:
    version: str
    serial: int = 0
    """Increases with every switch; workers acknowledge a serial, not just a name."""
    history: list[str] = field(default_factory=list)
    """Versions live before this one, oldest first; rollback pops the last."""


class Rollout:
    """The files of one server: ``live.json``, ``worker-<id>.json``, ``admin.lock``."""

    def __init__(self, state_dir: str | Path, num_workers: int = 1, timeout: float = 120.0) -> None:
        self.state_dir, self.num_workers, self.timeout = Path(state_dir), num_workers, timeout

    # ---- the live state ----------------------------------------------------------------------
    def read(self) -> LiveState:
        return LiveState(**json.loads((self.state_dir / LIVE_FILE).read_text()))

    def begin(self, version: str) -> LiveState:
        """The state a server starts with (no history)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = LiveState(version)
        write_json(self.state_dir / LIVE_FILE, asdict(state), durable=False)
        return state

    def switch(self, version: str) -> dict[str, Any]:
        """Make ``version`` live in every worker; the previous one goes on the history."""
        with self._admin_lock():
            current = self.read()
            if version == current.version:  # nothing to do, and nothing to push on the history
                return {"version": version, "previous": version, "serial": current.serial,
                        "history": current.history, "workers": len(self.workers())}
            state = LiveState(version, current.serial + 1, [*current.history, current.version])
            return self._apply(current, state)

    def rollback(self) -> dict[str, Any]:
        """Make the previous version live again."""
        with self._admin_lock():
            current = self.read()
            if not current.history:
                raise RolloutError(f"Nothing to roll back to: version {current.version!r} is the first one served.")
            state = LiveState(current.history[-1], current.serial + 1, current.history[:-1])
            return self._apply(current, state)

    def _apply(self, current: LiveState, state: LiveState) -> dict[str, Any]:
        write_json(self.state_dir / LIVE_FILE, asdict(state), durable=False)
        reports = self.wait(state.serial)
        failed = {r["worker"]: r["error"] for r in reports if r.get("error")}
        if failed:
            restored = LiveState(current.version, state.serial + 1, current.history)
            write_json(self.state_dir / LIVE_FILE, asdict(restored), durable=False)
            self.wait(restored.serial)
            worker, error = next(iter(failed.items()))
            raise RolloutError(
                f"Version {state.version!r} failed to load in worker {worker}: {error}. Version "
                f"{current.version!r} stays live."
            )
        return {"version": state.version, "previous": current.version, "serial": state.serial,
                "history": state.history, "workers": len(reports)}

    def wait(self, serial: int, poll: float = 0.02) -> list[dict[str, Any]]:
        """Every worker's report for ``serial`` (a loaded version or an error), or a 504 after ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            reports = [r for r in self.workers() if r.get("serial") == serial]
            if len(reports) >= self.num_workers:
                return reports
            if time.monotonic() > deadline:
                missing = sorted(set(range(self.num_workers)) - {r["worker"] for r in reports})
                raise RolloutError(
                    f"Workers {missing} did not acknowledge the switch within reload_timeout={self.timeout} s; "
                    "check the server log (a worker may have died) and retry.", status=504,
                )
            time.sleep(poll)

    @contextmanager
    def _admin_lock(self) -> Iterator[None]:
        with open(self.state_dir / "admin.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- worker reports ----------------------------------------------------------------------
    def report(self, worker: int, **status: Any) -> None:
        report = {"worker": worker, "pid": os.getpid(), **status}
        write_json(self.state_dir / f"worker-{worker}.json", report, durable=False)

    def workers(self) -> list[dict[str, Any]]:
        reports = []
        for path in sorted(self.state_dir.glob("worker-*.json")):
            try:
                reports.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # replaced between glob and read
                continue
        return reports

    def watch(self) -> Callable[[], LiveState | None]:
        """A poller for workers: returns the state when ``live.json`` changed since the last call."""
        seen: tuple[int, int] | None = None

        def changed() -> LiveState | None:
            nonlocal seen
            try:
                stat = os.stat(self.state_dir / LIVE_FILE)
            except FileNotFoundError:
                return None
            key = (stat.st_ino, stat.st_mtime_ns)
            if key == seen:
                return None
            seen = key
            return self.read()

        return changed

