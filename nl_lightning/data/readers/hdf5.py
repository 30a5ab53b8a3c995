"""Reader for one dataset inside an HDF5 file, through h5py (opened lazily in each process)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from nl_lightning.data.readers.base import (
    FileReader,
    LazyHandle,
    MissingKeyError,
    check_array,
    check_file,
    file_fingerprint,
    read_sorted,
    require,
)
from nl_lightning.errors import DataError


def list_datasets(file: Any) -> list[str]:
    """Paths of every dataset in an open h5py file, e.g. ``['/train/x', '/train/y']``."""
    h5py = require("h5py")
    found: list[str] = []
    file.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return found


def open_dataset(path: str, key: str) -> tuple[Any, Any]:
    """``(file, dataset)`` opened read-only; the file is kept so that it stays open."""
    h5py = require("h5py")
    file = h5py.File(path, "r")
    return file, file[key]


def _plain_bytes(file: Any, dataset: Any) -> bool:
    """Whether the dataset's stored bytes are its values as they are: no filters (compression,
    shuffle, checksums), not external, a numeric dtype, and a file without a user block."""
    return (not dataset.external and not file.userblock_size and dataset.dtype.kind in "biufc"
            and dataset.size > 0 and dataset.id.get_create_plist().get_nfilters() == 0)


def contiguous_memmap(file: Any, dataset: Any) -> np.memmap | None:
    """The dataset's bytes as a read-only ``np.memmap``, or None when HDF5 must assemble them.

    A contiguous dataset without filters is stored as one plain C-order block at ``get_offset()``,
    so random rows are read like an ``.npy`` memory map instead of through an HDF5 point selection.
    """
    if dataset.chunks is not None or not _plain_bytes(file, dataset):
        return None
    offset = dataset.id.get_offset()
    if offset is None:  # never written: no storage, reads give the fill value
        return None
    return np.memmap(file.filename, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)


class ChunkedRows:
    """Rows of an unfiltered dataset chunked by whole rows (``chunks=(c, *shape[1:])``), read
    straight from the file's bytes: row ``r`` lies in chunk ``r // c`` at ``(r % c) * row_bytes``.

    One copy per run of consecutive rows in a chunk, instead of an HDF5 selection per run (about
    200 us per row for shuffled batches on 1 MiB chunks).
    """

    def __init__(self, file: Any, dataset: Any, chunk_offsets: np.ndarray) -> None:
        self.shape, self.dtype, self.rows_per_chunk = tuple(dataset.shape), dataset.dtype, dataset.chunks[0]
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.chunk_offsets = chunk_offsets
        self.bytes = np.memmap(file.filename, dtype=np.uint8, mode="r")

    @classmethod
    def open(cls, file: Any, dataset: Any) -> ChunkedRows | None:
        """The reader, or None when the layout is another one (or a chunk was never written)."""
        if (dataset.chunks is None or tuple(dataset.chunks[1:]) != tuple(dataset.shape[1:])
                or not _plain_bytes(file, dataset)):
            return None
        n_chunks = -(-dataset.shape[0] // dataset.chunks[0])
        offsets = np.full(n_chunks, -1, dtype=np.int64)

        def record(info: Any) -> None:
            offsets[info.chunk_offset[0] // dataset.chunks[0]] = info.byte_offset

        if hasattr(dataset.id, "chunk_iter"):  # HDF5 >= 1.12.3: one pass over the chunk index
            dataset.id.chunk_iter(record)
        else:
            for i in range(dataset.id.get_num_chunks()):
                record(dataset.id.get_chunk_info(i))
        return None if (offsets < 0).any() else cls(file, dataset, offsets)

    def take(self, rows: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        """``dataset[rows]`` for sorted unique ``rows``, as a fresh array or written into ``into``
        (C-contiguous, of the dataset's dtype)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.row_bytes), np.uint8) if into is None else into.view(np.uint8).reshape(
            len(rows), self.row_bytes)
        if len(rows):
            chunk, within = np.divmod(rows, self.rows_per_chunk)
            starts = self.chunk_offsets[chunk] + within * self.row_bytes
            cuts = np.flatnonzero((np.diff(rows) != 1) | (np.diff(chunk) != 0)) + 1
            for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(rows)].tolist()):
                start = int(starts[a])
                out[a:b] = self.bytes[start : start + (b - a) * self.row_bytes].reshape(b - a, self.row_bytes)
        return out.view(self.dtype).reshape(len(rows), *self.shape[1:]) if into is None else into


def open_rows(path: str, key: str) -> tuple[Any, Any]:
    """``(file, rows)``: ``rows`` reads the file's bytes directly (``contiguous_memmap`` or
    ``ChunkedRows``) where the layout allows, else it is the h5py dataset."""
    file, dataset = open_dataset(path, key)
    direct = contiguous_memmap(file, dataset)
    if direct is None:
        direct = ChunkedRows.open(file, dataset)
    return file, dataset if direct is None else direct


def read_runs(dataset: Any, rows: np.ndarray) -> np.ndarray:
    """Sorted unique ``rows`` read as one slice per run of consecutive rows."""
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]):
        out[start:stop] = dataset[int(rows[start]) : int(rows[stop - 1]) + 1]
    return out


class Hdf5Reader(FileReader):
    """Rows of dataset ``key`` (a path inside the file such as ``"/train/x"``).

    The file is opened on first read in each process, never shared across ``fork``, so
    multi-worker DataLoaders are safe. An unfiltered dataset, contiguous or chunked by whole rows, is
    read from the file's bytes (``contiguous_memmap``, ``ChunkedRows``). Otherwise (compressed,
    say) a batch of sorted rows is one read: a slice when the rows are dense, else one slice per run
    of consecutive rows for chunked datasets (HDF5 point selections spanning many chunks are slower
    than that) or a fancy-index read.
    """

    def __init__(self, path: str | Path, key: str) -> None:
        h5py = require("h5py")
        self.path, self.key = check_file(path), key
        self.source = f"'{self.path}' dataset '{key}'"
        try:
            file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(f"'{self.path}' is not a readable HDF5 file ({err}).") from err
        with file:
            obj = file.get(key)
            if not isinstance(obj, h5py.Dataset):
                raise MissingKeyError(
                    f"Dataset '{key}' not found in '{self.path}'. Datasets in the file: {list_datasets(file)}."
                )
            self._shape, self._dtype, self._chunked = tuple(obj.shape), obj.dtype, obj.chunks is not None
        check_array(self.source, self._shape, self._dtype)
        self._dataset = LazyHandle(functools.partial(open_rows, str(self.path), key))

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        dataset = self._dataset.get()[1]
        if isinstance(dataset, ChunkedRows):
            return dataset.take(rows)
        if self._chunked and len(rows) and int(rows[-1]) - int(rows[0]) >= 4 * len(rows):
            return read_runs(dataset, rows)  # HDF5 point selections across chunks are slow
        return read_sorted(dataset, rows)

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        dataset = self._dataset.get()[1]
        if isinstance(dataset, ChunkedRows) and out.dtype == self._dtype and out.flags.c_contiguous:
            return dataset.take(rows, into=out)
        if isinstance(dataset, np.memmap):
            return read_sorted(dataset, rows, out=out)
        return super().read_into(rows, out)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        dataset = self._dataset.get()[1]
        if isinstance(dataset, ChunkedRows):
            return dataset.take(np.arange(start, stop))
        values = dataset[start:stop]
        return values if type(values) is np.ndarray else np.array(values)  # a memmap slice: copy it out

    def fingerprint(self) -> str:
        return file_fingerprint(self.path, "hdf5", self.key)
