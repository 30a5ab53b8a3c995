"""Reader for one key of an ``.npz`` archive: memory-mapped when stored, loaded once when compressed."""

from __future__ import annotations

import functools
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from nl_lightning.data.readers.base import (
    FileReader,
    LazyHandle,
    MissingKeyError,
    check_array,
    check_file,
    file_fingerprint,
    read_sorted,
)
from nl_lightning.data.readers.npy import open_memmap
from nl_lightning.errors import DataError

NpzCompressed = Literal["load", "error"]


def npz_member(path: Path, key: str) -> zipfile.ZipInfo:
    """The zip entry of ``key`` in an ``.npz`` file; errors list the keys that exist."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
    except zipfile.BadZipFile as err:
        raise DataError(f"'{path}' is not a valid .npz file ({err}). Re-save it with numpy.savez.") from err
    if key not in infos:
        raise MissingKeyError(f"Key '{key}' not found in '{path}'. Keys in the file: {sorted(infos)}.")
    return infos[key]


def stored_array_layout(path: Path, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, byte_offset)`` of an uncompressed member, for ``np.memmap``."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local_header = f.read(30)  # fixed part of a zip local file header
        name_len, extra_len = struct.unpack("<HH", local_header[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        return tuple(shape), np.dtype(dtype), fortran, f.tell()


class NpzReader(FileReader):
    """Rows of ``key`` in an ``.npz`` archive; only that key is touched.

    Members written by ``numpy.savez`` (stored) are memory-mapped in place. Members written by
    ``numpy.savez_compressed`` cannot be memory-mapped: with ``compressed="load"`` (default) that
    one key is decompressed into memory once, in the process that builds the reader (forked
    DataLoader workers share it), with a warning giving its size; ``compressed="error"`` raises
    instead, for data that must not be loaded into memory.
    """

    def __init__(self, path: str | Path, key: str, compressed: NpzCompressed = "load") -> None:
        self.path, self.key = check_file(path), key
        self.source = f"'{self.path}' key '{key}'"
        info = npz_member(self.path, key)
        if info.compress_type == zipfile.ZIP_STORED:
            shape, dtype, fortran, offset = stored_array_layout(self.path, info)
            opener = functools.partial(open_memmap, str(self.path), dtype.str, shape, offset, fortran)
            self._array = LazyHandle(opener)
            self._loaded = None
        else:
            self._loaded = self._load_compressed(info, compressed)
            shape, dtype = self._loaded.shape, self._loaded.dtype
        check_array(self.source, shape, dtype)
        self._shape, self._dtype = tuple(shape), dtype

    def _load_compressed(self, info: zipfile.ZipInfo, compressed: NpzCompressed) -> np.ndarray:
        if compressed == "error":
            raise DataError(
                f"{self.source} is compressed (numpy.savez_compressed) and cannot be memory-mapped. "
                "Re-save it with numpy.savez, or set npz_compressed='load' to load this key into memory."
            )
        warnings.warn(
            f"{self.source} is compressed and cannot be memory-mapped; loading it into memory once "
            f"({info.file_size / 1e6:.1f} MB). Re-save with numpy.savez to memory-map it instead.",
            stacklevel=3,
        )
        with np.load(self.path, allow_pickle=False) as archive:
            return archive[self.key]

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        array = self._loaded if self._loaded is not None else self._array.get()
        return read_sorted(array, rows)

    def fingerprint(self) -> str:
        return file_fingerprint(self.path, "npz", self.key)
