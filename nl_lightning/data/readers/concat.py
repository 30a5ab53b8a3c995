"""Several readers of the same sample shape seen as one, rows in order."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nl_lightning._io import bytes_sha256
from nl_lightning.errors import ConfigError, DataError
from nl_lightning.data.readers.base import Reader, RowGroups


class ConcatReader(Reader):
    """Rows of ``readers[0]``, then ``readers[1]``, ...; errors still name the file and its own row."""

    def __init__(self, readers: Sequence[Reader]) -> None:
        if not readers:
            raise ConfigError("ConcatReader needs at least one reader; the list of paths is empty.")
        first = readers[0]
        for other in readers[1:]:
            if other.sample_shape != first.sample_shape:
                raise DataError(
                    f"Cannot concatenate {first.source} (samples of shape {first.sample_shape}) with "
                    f"{other.source} (shape {other.sample_shape}); all files must hold the same sample shape."
                )
        self.readers = list(readers)
        self._offsets = np.cumsum([0] + [len(r) for r in self.readers])
        self._dtype = np.result_type(*[r.dtype for r in self.readers])
        self.source = " + ".join(r.source for r in self.readers)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.readers[0].sample_shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _split(self, row: int) -> tuple[Reader, int]:
        part = int(np.searchsorted(self._offsets, row, side="right") - 1)
        return self.readers[part], row - int(self._offsets[part])

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        parts = np.searchsorted(self._offsets, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(parts)) + 1
        chunks = [
            self.readers[parts[seg[0]]].read_batch(rows[seg] - self._offsets[parts[seg[0]]])
            for seg in np.split(np.arange(len(rows)), cuts)
            if len(seg)
        ]
        if not chunks:
            return np.empty((0, *self.sample_shape), dtype=self._dtype)
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def row_groups(self) -> RowGroups | None:
        """The parts' row groups end to end, when every part has them (else None)."""
        parts = [r.row_groups() for r in self.readers]
        if not parts or any(p is None for p in parts):
            return None
        offsets = np.concatenate([p.offsets[:-1] + start for p, start in zip(parts, self._offsets)] + [self._offsets[-1:]])
        return RowGroups(offsets, window=min(p.window for p in parts))

    def locate(self, row: int) -> str:
        reader, local = self._split(row)
        return reader.locate(local)

    def describe_row(self, row: int) -> str | None:
        reader, local = self._split(row)
        return reader.describe_row(local)

    def fingerprint(self) -> str:
        return bytes_sha256("|".join(r.fingerprint() for r in self.readers).encode())[:16]
