"""Functional readers, one per format, behind :class:`Reader` (no lightning import here)."""

from nl_lightning.data.readers.base import MissingKeyError, Reader, RowGroups
from nl_lightning.data.readers.concat import ConcatReader
from nl_lightning.data.readers.hdf5 import Hdf5Reader
from nl_lightning.data.readers.memory import MemoryReader
from nl_lightning.data.readers.npy import NpyReader
from nl_lightning.data.readers.npz import NpzReader
from nl_lightning.data.readers.open import Format, infer_format, open_reader, open_source
from nl_lightning.data.readers.parquet import ParquetReader
from nl_lightning.data.readers.pt import TorchReader

__all__ = [
    "ConcatReader",
    "Format",
    "Hdf5Reader",
    "MemoryReader",
    "MissingKeyError",
    "NpyReader",
    "NpzReader",
    "ParquetReader",
    "Reader",
    "RowGroups",
    "TorchReader",
    "infer_format",
    "open_reader",
    "open_source",
]
