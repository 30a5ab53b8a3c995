"""Sample caches in front of a reader: memory (LRU under a byte budget), disk (memory-mapped), hybrid.

A cache answers ``read(rows, load)``: the decoded fields of sorted unique ``rows``, calling
``load`` (the reader path) once for the rows it does not hold. ``hits`` / ``misses`` count rows,
per process: with DataLoader workers each worker counts (and, for the memory cache, holds) its own.
"""

from __future__ import annotations

import functools
import json
import os
import shutil

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale versions are pruned unconditionally
    fcntl = None  # type: ignore[assignment]
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from nl_lightning._io import staged_dir
from nl_lightning.data.readers.base import LazyHandle, read_sorted
from nl_lightning.errors import ConfigError

Fields = tuple[np.ndarray, ...]
Loader = Callable[[np.ndarray], Fields]
CacheKind = Literal["none", "memory", "disk", "hybrid"]


class SampleCache(ABC):
    """Rows of decoded fields (features, targets) kept between reads."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    @abstractmethod
    def read(self, rows: np.ndarray, load: Loader) -> Fields: ...

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


class MemoryCache(SampleCache):
    """Least-recently-used rows in process memory, evicted beyond ``max_bytes`` of array data."""

    def __init__(self, max_bytes: int = 2**30) -> None:
        super().__init__()
        if max_bytes < 0:
            raise ConfigError(f"MemoryCache max_bytes must be >= 0; got {max_bytes}.")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[int, Fields] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def read(self, rows: np.ndarray, load: Loader) -> Fields:
        found = [self._entries.get(int(r)) for r in rows]
        missing = [i for i, entry in enumerate(found) if entry is None]
        self.hits += len(rows) - len(missing)
        self.misses += len(missing)
        for i, entry in enumerate(found):
            if entry is not None:
                self._entries.move_to_end(int(rows[i]))
        if len(missing) == len(rows):
            loaded = load(rows)
            self._store(rows, loaded)
            return loaded
        if missing:
            loaded = load(rows[missing])
            for j, i in enumerate(missing):
                found[i] = tuple(field[j] for field in loaded)
            self._store(rows[missing], loaded)
        return tuple(np.stack([entry[k] for entry in found]) for k in range(len(found[0])))

    def _store(self, rows: np.ndarray, loaded: Fields) -> None:
        for j, row in enumerate(rows):
            entry = tuple(field[j].copy() for field in loaded)
            size = sum(e.nbytes for e in entry)
            if size > self.max_bytes:
                continue
            self._entries[int(row)] = entry
            self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= sum(e.nbytes for e in evicted)

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_entries": OrderedDict(), "nbytes": 0}


class DiskCache(SampleCache):
    """Decoded rows in memory-mapped ``.npy`` files under ``directory/<name>-<fingerprint>/``.

    ``name`` identifies what is cached (source, keys, dtypes, cached transforms) and
    ``fingerprint`` its version (it must change with the file's size or mtime_ns): a new
    fingerprint starts an empty cache and removes the stale ``<name>-*`` versions that no running
    process uses: every process that uses a version holds a shared lock on its ``.lock`` file, and
    pruning skips a version it cannot lock exclusively. Rows are filled on first read, by any
    process (DataLoader workers, DDP ranks), and flagged after writing.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        name: str,
        fingerprint: str,
        length: int,
        fields: Sequence[tuple[Sequence[int], np.dtype | str]],
    ) -> None:
        super().__init__()
        self.path = Path(directory).expanduser() / f"{name}-{fingerprint}"
        self.layout = {"fingerprint": fingerprint, "length": int(length), "fields": [[list(s), np.dtype(d).str] for s, d in fields]}
        if not _matches(self.path, self.layout):
            _create(self.path, self.layout)
        self._lock = _hold_shared(self.path)  # before pruning: another job's new version never prunes ours
        _prune(self.path.parent, name, keep=self.path)
        self._maps = LazyHandle(functools.partial(_open_maps, str(self.path), len(self.layout["fields"])))

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_lock": None}  # workers take their own lock when they open the maps

    def read(self, rows: np.ndarray, load: Loader) -> Fields:
        filled, maps, _ = self._maps.get()
        hit = filled[rows].astype(bool)
        n_hit = int(hit.sum())
        self.hits += n_hit
        self.misses += len(rows) - n_hit
        if n_hit == len(rows):
            return tuple(read_sorted(m, rows) for m in maps)
        missing = rows[~hit]
        loaded = load(missing)
        for m, field in zip(maps, loaded):
            m[missing] = field
        filled[missing] = 1  # flag only after the data is written
        if n_hit == 0:
            return loaded
        out = tuple(np.empty((len(rows), *m.shape[1:]), dtype=m.dtype) for m in maps)
        for o, m, field in zip(out, maps, loaded):
            o[hit] = read_sorted(m, rows[hit])
            o[~hit] = field
        return out


class HybridCache(SampleCache):
    """A :class:`MemoryCache` in front of a :class:`DiskCache`; a row missing from both is read once."""

    def __init__(self, memory: MemoryCache, disk: DiskCache) -> None:  # counts come from the layers
        self.memory, self.disk = memory, disk

    def read(self, rows: np.ndarray, load: Loader) -> Fields:
        return self.memory.read(rows, lambda missing: self.disk.read(missing, load))

    @property
    def hits(self) -> int:  # type: ignore[override]
        return self.memory.hits + self.disk.hits

    @property
    def misses(self) -> int:  # type: ignore[override]
        return self.disk.misses

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "memory_hits": self.memory.hits, "disk_hits": self.disk.hits}


def _matches(path: Path, layout: dict[str, Any]) -> bool:
    try:
        return json.loads((path / "meta.json").read_text()) == layout
    except (OSError, ValueError):
        return False


def _create(path: Path, layout: dict[str, Any]) -> None:
    """Write empty maps in a staging folder, then move it into place; if another process (a DDP
    rank) created it first, that one is used."""
    if path.exists() and not _matches(path, layout):  # unreadable leftovers; a valid one is never removed
        shutil.rmtree(path, ignore_errors=True)
    with staged_dir(path, keep_existing=True) as build:
        length = layout["length"]
        np.lib.format.open_memmap(build / "filled.npy", mode="w+", dtype=np.uint8, shape=(length,)).flush()
        for i, (shape, dtype) in enumerate(layout["fields"]):
            shape = (length, *shape)
            np.lib.format.open_memmap(build / f"field{i}.npy", mode="w+", dtype=np.dtype(dtype), shape=shape).flush()
        (build / "meta.json").write_text(json.dumps(layout))


def _prune(directory: Path, name: str, keep: Path) -> None:
    """Remove stale versions of ``name`` that no running process holds (see :func:`_hold_shared`)."""
    for stale in directory.glob(f"{name}-*"):
        if stale == keep or ".tmp" in stale.name or not stale.is_dir():
            continue
        try:
            fd = os.open(stale / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while any process uses this version
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass  # in use by another job: left for a later run to prune
        finally:
            os.close(fd)


def _hold_shared(path: Path) -> Any:
    """A shared lock on ``path/.lock``, held while the returned file object lives (closed on GC)."""
    if fcntl is None:
        return None
    handle = open(path / ".lock", "a+b")  # noqa: SIM115 - kept open on purpose: it is the lock
    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
    return handle


def _open_maps(path: str, n_fields: int) -> tuple[np.ndarray, list[np.ndarray], Any]:
    lock = _hold_shared(Path(path))  # this process (a DataLoader worker, a DDP rank) uses the version too
    filled = np.lib.format.open_memmap(os.path.join(path, "filled.npy"), mode="r+")
    maps = [np.lib.format.open_memmap(os.path.join(path, f"field{i}.npy"), mode="r+") for i in range(n_fields)]
    return filled, maps, lock


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nl_lightning/data`` (``~/.cache/...`` when unset)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nl_lightning" / "data"


def make_cache(
    kind: CacheKind,
    *,
    name: str,
    fingerprint: str,
    length: int,
    fields: Sequence[tuple[Sequence[int], np.dtype | str]],
    directory: str | os.PathLike | None = None,
    max_bytes: int = 2**30,
) -> SampleCache | None:
    """The cache ``kind`` names (``"none"`` gives ``None``)."""
    if kind == "none":
        return None
    if kind == "memory":
        return MemoryCache(max_bytes)
    if kind not in ("disk", "hybrid"):
        raise ConfigError(f"Unknown cache {kind!r}; use one of 'none', 'memory', 'disk', 'hybrid'.")
    disk = DiskCache(directory or default_cache_dir(), name, fingerprint, length, fields)
    return disk if kind == "disk" else HybridCache(MemoryCache(max_bytes), disk)
