"""Reader for ``.npy`` files, memory-mapped (nothing is loaded until rows are read)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from nl_lightning.data.readers.base import (
    DataFileError, FileReader, LazyHandle, check_array, check_file, file_fingerprint, read_sorted,
)


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data_offset)`` of an ``.npy`` file without reading its data."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
        except ValueError as err:
            raise DataFileError(f"'{path}' is not a valid .npy file ({err}). Re-save it with numpy.save.") from err
        shape, dtype, offset = tuple(shape), np.dtype(dtype), f.tell()
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise DataFileError(
            f"'{path}' is truncated: its header says {shape} {dtype} ({expected:,} bytes with the header), but the file "
            f"has {size:,} bytes (an interrupted write or copy). Re-save it with numpy.save or copy it again."
        )
    return shape, dtype, fortran, offset


def open_memmap(path: str, dtype: str, shape: tuple[int, ...], offset: int, fortran: bool) -> np.ndarray:
    """A read-only plain-ndarray view of a memory map (slices are views, fancy indexing copies)."""
    order = "F" if fortran else "C"
    return np.asarray(np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset, order=order))


class NpyReader(FileReader):
    """Rows of one ``.npy`` array, memory-mapped lazily in each process."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_file(path)
        shape, self._dtype, fortran, offset = read_npy_header(self.path)
        check_array(self.path, shape, self._dtype)
        self._shape = shape
        self.source = f"'{self.path}'"
        opener = functools.partial(open_memmap, str(self.path), self._dtype.str, shape, offset, fortran)
        self._array = LazyHandle(opener)

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        return read_sorted(self._array.get(), rows)

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        return read_sorted(self._array.get(), rows, out=out)

    def fingerprint(self) -> str:
        return file_fingerprint(self.path, "npy")

