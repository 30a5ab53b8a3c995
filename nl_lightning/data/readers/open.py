"""Pick a reader from a path's suffix (or an explicit format) and a key or column."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence, get_args

from nl_lightning.data.readers.base import MissingKeyError, Reader
from nl_lightning.data.readers.concat import ConcatReader
from nl_lightning.data.readers.hdf5 import Hdf5Reader
from nl_lightning.data.readers.npy import NpyReader
from nl_lightning.data.readers.npz import NpzCompressed, NpzReader
from nl_lightning.data.readers.parquet import ParquetReader
from nl_lightning.data.readers.pt import TorchReader
from nl_lightning.errors import ConfigError, NotAFileError

#: A file format by name; ``auto`` infers it from the suffix (:func:`infer_format`).
Format = Literal["auto", "npy", "npz", "hdf5", "parquet", "pt"]
Key = str | Sequence[str] | None

SUFFIXES = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".pt": "pt",
    ".pth": "pt",
}


def infer_format(path: str | Path) -> str:
    """The format of ``path`` from its suffix; a directory means one ``<key>.npy`` file per key.

    >>> infer_format("train.h5"), infer_format("part-0.parquet"), infer_format("x.pt")
    ('hdf5', 'parquet', 'pt')
    """
    path = Path(path)
    if path.is_dir():
        known = SUFFIXES.get(path.suffix.lower())
        if known is not None and known != "npy":
            raise NotAFileError(
                f"'{path}' is a folder, but its name says {known} file (suffix '{path.suffix}'). Pass the {known} "
                "file itself; a folder is read only as a set of <key>.npy files (name it without a data suffix)."
            )
        return "npy"
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    raise ConfigError(
        f"Unknown data format for '{path}' (suffix '{path.suffix}'). Known suffixes: {sorted(SUFFIXES)}; "
        f"or set the format explicitly, one of {list(get_args(Format))[1:]}."
    )


def open_reader(
    path: str | Path,
    key: Key,
    format: Format = "auto",
    *,
    shape: Sequence[int] | None = None,
    npz_compressed: NpzCompressed = "load",
    parquet_cache_mb: float = 256.0,
) -> Reader:
    """A reader for ``key`` (dataset path, archive key or column(s)) of the file at ``path``."""
    fmt = infer_format(path) if format == "auto" else format
    if fmt not in get_args(Format):
        raise ConfigError(f"Unknown data format '{format}'; use one of {list(get_args(Format))}.")
    if fmt == "parquet":
        return ParquetReader(path, _key(key, fmt), shape=shape, cache_mb=parquet_cache_mb)
    if not (key is None or isinstance(key, str)):
        raise ConfigError(f"Only Parquet takes a list of columns; got {list(key)} for {fmt} file '{path}'.")
    if fmt == "npy":
        return NpyReader(_npy_path(Path(path), key))
    if fmt == "npz":
        return NpzReader(path, _key(key, fmt), compressed=npz_compressed)
    if fmt == "hdf5":
        return Hdf5Reader(path, _key(key, fmt))
    return TorchReader(path, key)


def open_source(
    paths: str | Path | Sequence[str | Path],
    key: Key,
    format: Format = "auto",
    *,
    shape: Sequence[int] | None = None,
    npz_compressed: NpzCompressed = "load",
    parquet_cache_mb: float = 256.0,
) -> Reader:
    """One reader over one path or several paths concatenated in order."""
    options = dict(shape=shape, npz_compressed=npz_compressed, parquet_cache_mb=parquet_cache_mb)
    if isinstance(paths, (str, Path)):
        return open_reader(paths, key, format, **options)
    if not paths:
        raise ConfigError("The list of data paths is empty; give at least one file.")
    readers = [open_reader(p, key, format, **options) for p in paths]
    return readers[0] if len(readers) == 1 else ConcatReader(readers)


def _key(key: Key, fmt: str) -> Key:
    if key is None:
        raise ConfigError(f"A {fmt} source needs a key (dataset path, archive key or column); got None.")
    return key


def _npy_path(path: Path, key: str | None) -> Path:
    """``<dir>/<key>.npy`` for a directory; a ``.npy`` file is used as it is (it holds one array)."""
    if path.is_dir():
        if key is None:
            raise ConfigError(f"'{path}' is a directory of .npy files; name the file with a key, e.g. 'x' for x.npy.")
        candidate = path / f"{key}.npy"
        if not candidate.exists():
            found = sorted(p.stem for p in path.glob("*.npy"))
            raise MissingKeyError(
                f"Key '{key}' not found in '{path}' (no {key}.npy). Keys (.npy files) in the folder: {found}."
            )
        return candidate
    return path
