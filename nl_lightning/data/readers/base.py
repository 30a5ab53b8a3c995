"""The reader interface: ``len`` rows, one row by index, many rows by a sorted index array."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nl_lightning._io import bytes_sha256
from nl_lightning.errors import DataError, MissingFileError, NLUserError, NotAFileError


class DataFileError(DataError):
    """A data file that cannot be read as data (not a regular file, truncated); the message names it."""


@dataclass(frozen=True)
class RowGroups:
    """Row groups of a reader: group ``g`` holds rows ``offsets[g]:offsets[g + 1]``; ``window``
    groups fit its decode cache at once."""

    offsets: np.ndarray
    window: int


class MissingKeyError(NLUserError, KeyError):
    """A dataset key or column that is not in the file; ``str()`` is the message, not its repr."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Reader(ABC):
    """``len(reader)`` rows of shape ``sample_shape`` read from one source.

    ``read_batch(rows)`` takes sorted, unique row indices (one call per batch) and returns a new
    array of shape ``(len(rows), *sample_shape)`` that the caller owns. File handles are opened
    lazily in each process (see :class:`LazyHandle`), so a reader pickles to DataLoader workers.
    """

    source: str = "<memory>"

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]: ...

    @property
    @abstractmethod
    def dtype(self) -> np.dtype: ...

    @abstractmethod
    def read_batch(self, rows: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """A short hash that changes when the underlying data changes."""

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``read_batch(rows)`` written into ``out`` (shape ``(len(rows), *sample_shape)``, converted
        to its dtype as ``astype`` does) and returned. Readers of byte-addressable files override it
        to copy straight from the file's pages, e.g. into a DataLoader worker's shared memory."""
        np.copyto(out, self.read_batch(rows), casting="unsafe")
        return out

    def read(self, row: int) -> np.ndarray:
        """One row, shape ``sample_shape``."""
        if not -len(self) <= row < len(self):
            raise IndexError(f"Row {row} is out of range for {self.source} with {len(self)} rows.")
        return self.read_batch(np.array([row % len(self)]))[0]

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``; readers override this when a slice is cheaper than an index."""
        return self.read_batch(np.arange(start, stop))

    def locate(self, row: int) -> str:
        """Where ``row`` lives, for error messages: file, key and row inside that file."""
        return f"{self.source} row {row}"

    def describe_row(self, row: int) -> str | None:
        """Why ``row`` could not be decoded (e.g. a null), or ``None``; used only for messages."""
        return None

    def row_groups(self) -> RowGroups | None:
        """Where rows are stored in groups that are cheap to read only whole and too many to keep
        decoded at once (Parquet row groups bigger than its cache); ``None`` when any row is cheap
        to read alone. A shuffle then visits groups in a random order (``data/group_sampler.py``)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}, rows={len(self)}, shape={self.sample_shape})"


class FileReader(Reader):
    """A reader whose ``_shape`` (rows first) and ``_dtype`` are known from the file's header."""

    _shape: tuple[int, ...]
    _dtype: np.dtype

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self._shape[1:]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype


class LazyHandle:
    """An object opened on first use in each process and dropped when pickled.

    A handle inherited through ``fork`` is never reused (the pid is checked), so HDF5 and
    memory-mapped files are safe with multi-worker DataLoaders under fork and spawn.
    """

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._handle: Any = None
        self._pid: int | None = None

    def get(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._opener()
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        return {"_opener": self._opener, "_handle": None, "_pid": None}


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; a clear error when it is missing, a directory or empty."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingFileError(
            f"Data file not found: '{path}' (resolved from {Path.cwd()}). Check the path in your "
            "config, e.g. `--data.init_args.train_path=...`."
        )
    if path.is_dir():
        raise NotAFileError(f"Expected a data file but '{path}' is a directory.")
    if not path.is_file():  # a FIFO, socket or device: no size, no random access
        raise DataFileError(f"'{path}' is not a regular file (a pipe, socket or device); data files are read by row "
                            "with random access: write the data to a file and pass that.")
    if path.stat().st_size == 0:
        raise DataError(f"Data file is empty (0 bytes): '{path}'. Re-write it or remove it from the config.")
    return path


def check_array(where: object, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A stored array must have rows, at least one, and a numeric dtype."""
    if len(shape) == 0:
        raise DataError(f"{where} holds a scalar; a data source needs at least one dimension (rows).")
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects (dtype {dtype}); save a numeric array instead.")
    if shape[0] == 0:
        raise DataError(f"{where} has 0 rows; write data to it or remove it from the config.")


def file_fingerprint(path: str | os.PathLike, *parts: object) -> str:
    """Hash of the absolute path, size, mtime_ns and ``parts`` (keys, columns, format)."""
    path = Path(path).resolve()
    stat = path.stat()
    text = "|".join(str(p) for p in (path, stat.st_size, stat.st_mtime_ns, *parts))
    return bytes_sha256(text.encode())[:16]


def is_contiguous(rows: np.ndarray) -> bool:
    """Whether sorted unique ``rows`` form one slice ``rows[0]:rows[-1] + 1``."""
    return len(rows) > 0 and int(rows[-1]) - int(rows[0]) + 1 == len(rows)


def read_sorted(array: Any, rows: np.ndarray, density: int = 4, out: np.ndarray | None = None) -> np.ndarray:
    """``array[rows]`` for sorted unique rows: one slice when the rows are dense, else fancy indexing.

    Reading the covering slice and subsetting beats a fancy-index read once the span is within
    ``density`` times the number of rows (HDF5 and memory maps both read contiguously fastest).
    ``out``: written into and returned instead of a new array (as :meth:`Reader.read_into`); rows
    forming one slice are then copied once, straight from ``array``.
    """
    if out is not None:
        np.copyto(out, array[int(rows[0]) : int(rows[-1]) + 1] if is_contiguous(rows) else read_sorted(array, rows),
                  casting="unsafe")
        return out
    if len(rows) == 0:
        return _owned(array[0:0])
    start, stop = int(rows[0]), int(rows[-1]) + 1
    if stop - start == len(rows):
        return _owned(array[start:stop])
    if stop - start <= density * len(rows):
        return np.asarray(array[start:stop])[rows - start]
    return _owned(array[rows])


def _owned(values: Any) -> np.ndarray:
    """``values`` itself when it is a fresh writable array, else a copy (slices of memory maps)."""
    if type(values) is np.ndarray and values.base is None and values.flags.writeable:
        return values
    return np.array(values)


def require(module: str) -> Any:
    """Import an optional dependency of the ``data`` extra, or say how to install it."""
    from nl_lightning._imports import import_optional

    return import_optional(module, "data", "Reading this format")
