"""Process lifecycle helpers: whether a pid runs, dying with the parent, sending output to a
file, and why a child process ended (for stale locks, runtime folders and trial processes)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists; another user's process counts as alive (it may not be signalled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def redirect_output(path: str | Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def describe_exit(code: int | None, log: Path) -> str:
    """Why a child process ended without a result, with the last lines of its log."""
    if code is not None and code < 0:
        sig = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = f"the trial process was killed by {sig}"
        if -code == signal.SIGKILL:
            why += " (out of memory? the kernel's OOM killer sends SIGKILL; check `dmesg`)"
    else:
        why = f"the trial process exited with code {code} without a result"
    tail = _tail(log)
    return f"{why}; last log lines: {tail}" if tail else why


def _tail(log: Path, lines: int = 3, max_chars: int = 600) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-max_chars:]
