"""Process lifecycle helpers: whether a pid runs, dying with the parent, sending output to a
file, and why a child process ended (for stale locks, runtime folders, trial processes and the
server's workers)."""

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


def process_running(pid: int) -> bool:
    """True while ``pid`` runs: exists and is not a zombie (a killed child stays a zombie until its
    parent reaps it, and ``pid_alive`` still sees it)."""
    if not pid_alive(pid):
        return False
    if not sys.platform.startswith("linux"):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False  # gone between the two checks
    return state not in ("Z", "X")


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere). ``parent``: the pid
    the parent had (checked after the request, so a parent that died first is caught); None = any
    parent but init. Linux ties this to the parent *thread* that created the process."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1 if parent is None else os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_FORK_PARENT: list[int] = []


def forks_die_with_parent() -> None:
    """From now on, every child this process forks (``os.fork`` and multiprocessing's fork context,
    not spawn) dies when this process dies, even by SIGKILL; children of those children likewise."""
    if not sys.platform.startswith("linux") or _FORK_PARENT:
        return
    _FORK_PARENT.append(os.getpid())
    os.register_at_fork(before=_remember_parent, after_in_child=lambda: die_with_parent(_FORK_PARENT[0]))


def _remember_parent() -> None:
    _FORK_PARENT[0] = os.getpid()  # inherited by the child: the pid its parent had when it forked


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
