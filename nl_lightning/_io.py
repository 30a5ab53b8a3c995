"""Files written whole or not at all, and file hashes: the one place nl_lightning does either.

``write_atomic`` writes bytes or text (fsynced, then renamed over the target, the rename made
durable); ``atomic_output`` yields a temporary path for a library that writes the file itself
(``torch.save``, ONNX) and moves it (and its side files) into place; ``staged_dir`` builds a whole folder
(an export): the folder is built as ``.<name>.tmp-XXXX`` and exchanged with the target in one
``renameat2(RENAME_EXCHANGE)`` call on Linux, so a reader sees the old folder or the new one,
never a mix. Each temporary folder holds an ``flock`` while its writer lives; a writer killed
(even by SIGKILL) drops the lock, and the next write to the same target removes the leftovers.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock, so stale folders are not cleaned automatically
    fcntl = None  # type: ignore[assignment]

TMP_MARK = ".tmp-"


def temp_prefix(target: Path) -> str:
    """Temporary folders for ``target`` are named ``.<target name>.tmp-<random>``."""
    return f".{target.name}{TMP_MARK}"


@contextmanager
def locked_temp_dir(target: str | Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``target``, locked while in use and removed on exit.

    Stale folders of earlier writers to the same target (killed before they could clean up) are
    removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    fd = _lock(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def clean_stale(target: str | Path) -> list[Path]:
    """Remove the temporary folders of ``target`` whose writer is gone (their lock is free)."""
    target = Path(target)
    if fcntl is None or not target.parent.is_dir():
        return []
    removed = []
    for path in target.parent.glob(f"{temp_prefix(target)}*"):
        if path.is_dir() and not path.is_symlink():
            fd = _lock(path, blocking=False)
            if fd is None:
                continue  # a live writer holds it
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_output(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name; on success move it (and siblings) into place.

    Side files the writer puts beside it (ONNX external data) keep their relative names and move
    first; the main file moves last. On failure nothing is moved and ``path`` is untouched. As in
    ``write_atomic``, the files and the renames are flushed to disk unless ``durable=False``.
    """
    path = Path(path)
    with locked_temp_dir(path) as tmp_dir:
        yield tmp_dir / path.name
        main = tmp_dir / path.name
        if not main.exists():
            raise FileNotFoundError(f"Nothing was written to {main}; the writer did not produce {path.name}.")
        sides = sorted(p for p in tmp_dir.iterdir() if p != main)
        if durable:
            for file in (*sides, main):
                fsync_file(file)
        for side in sides:
            os.replace(side, path.parent / side.name)
        os.replace(main, path)
    if durable:
        fsync_dir(path.parent)


@contextmanager
def staged_dir(target: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty folder to build ``target`` in; on success it replaces ``target`` in one step.

    Until then the old ``target`` (if any) stays whole; on failure or a kill it is untouched.
    Temporary files that libraries make through ``tempfile`` (ONNX Runtime's quantizer) are
    created inside the staging folder too, so a kill leaves nothing outside it. With
    ``keep_existing=True`` the first writer wins: a ``target`` that exists by then (another process
    built it meanwhile) is kept and this build is dropped (a cache several processes may fill).
    """
    target = Path(target)
    with locked_temp_dir(target) as tmp:
        build = tmp / "build"
        build.mkdir()
        with _tempfile_dir(tmp):
            yield build
        if not keep_existing:
            replace_dir(build, target, tmp / "old")
        elif not target.exists():
            try:
                os.rename(build, target)
            except OSError:  # created between the check and the rename: that one is kept
                pass


def replace_dir(new: Path, target: Path, trash: Path) -> None:
    """Put folder ``new`` at ``target``. The previous ``target`` ends up at ``new`` (exchanged) or
    at ``trash``; both should lie inside a locked temporary folder, which removes them."""
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):
        # No atomic exchange (not Linux, or the filesystem lacks it): two renames, old folder first.
        os.rename(target, trash)
        os.rename(new, target)


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = True) -> str:
    """Write ``data`` (text as UTF-8) so ``path`` holds the old bytes or the new ones, never part.

    The bytes are flushed to disk before the rename and the rename itself is made durable
    (``durable=False`` skips both fsyncs: for files a crash may lose but must never tear, such as
    progress state rewritten many times a second). Returns the SHA-256 of what was written.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return bytes_sha256(raw)


def write_json(path: str | Path, data: Any, *, durable: bool = True, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``data`` as indented JSON, atomically (see ``write_atomic``); ``default`` as in ``json.dumps``."""
    write_atomic(path, json.dumps(data, indent=2, default=default) + "\n", durable=durable)
    return Path(path)


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()


def arrays_sha256(named: Iterable[tuple[str, Any]]) -> str:
    """Hex SHA-256 of named tensors / NumPy arrays (a state dict's items, a batch's fields): each
    name, dtype, shape and raw bytes, in order, without joining them in memory; any other value
    counts by its ``repr``. Tensors are read on the CPU."""
    import numpy as np

    digest = hashlib.sha256()
    for name, value in named:
        if hasattr(value, "detach") and hasattr(value, "view"):  # a torch tensor
            tensor = value.detach().cpu().contiguous()
            head, data = f"{name}:{tensor.dtype}:{tuple(tensor.shape)}", _tensor_bytes(tensor)
        elif isinstance(value, np.ndarray):
            head, data = f"{name}:{value.dtype}:{value.shape}", np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        else:
            head, data = f"{name}={value!r}", None
        digest.update(head.encode() + b"\0")
        if data is not None:
            digest.update(memoryview(data))
    return digest.hexdigest()


def _tensor_bytes(tensor: Any) -> Any:
    import torch

    return tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def path_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder (a sharded checkpoint, a model folder): its relative names
    and their bytes' hashes, in sorted order, so a renamed or changed file changes the digest."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(p.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(file_sha256(p)))
    return digest.hexdigest()


def save_figure(figure: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure as an image (format from the suffix), atomically; not fsynced: a figure
    is drawn again on the next run, it only must never be torn."""
    path = Path(path)
    with atomic_output(path, durable=False) as tmp:
        figure.savefig(tmp, **savefig_kwargs)
    return path


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically and durably (state dicts, tensors, Lightning checkpoints)."""
    import torch

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def fsync_file(path: str | Path) -> None:
    """Flush a file that a library wrote (and closed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make renames inside ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(path: Path, blocking: bool = True) -> int | None:
    """An exclusive ``flock`` on folder ``path``: its fd, or None if another process holds it."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: this filesystem cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


@contextmanager
def _tempfile_dir(folder: Path) -> Iterator[None]:
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before

