"""Reader for columns of a Parquet file through pyarrow, one row group at a time."""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nl_lightning.data.readers.base import (
    LazyHandle,
    MissingKeyError,
    Reader,
    RowGroups,
    check_file,
    file_fingerprint,
    read_sorted,
    require,
)
from nl_lightning.errors import ConfigError, DataError


def decode_table(table: Any, list_shape: tuple[int, ...] | None) -> np.ndarray:
    """A table's columns as one array: stacked scalar columns, or one list column reshaped."""
    if list_shape is None:
        cols = [c.to_numpy() for c in table.columns]
        return np.stack(cols, axis=1) if len(cols) > 1 else cols[0]
    pc = require("pyarrow.compute")
    column = table.column(0).combine_chunks()
    good = pc.fill_null(pc.equal(pc.list_value_length(column), math.prod(list_shape)), False)
    if pc.all(good).as_py():  # the common case: no null or ragged rows, no filtering copy
        return pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, *list_shape)
    values = pc.list_flatten(column.filter(good)).to_numpy(zero_copy_only=False).reshape(-1, *list_shape)
    good = good.to_numpy(zero_copy_only=False)  # filter with the Arrow mask: pyarrow < 16 takes no NumPy one
    out = np.full((len(column), *list_shape), np.nan, dtype=np.result_type(values.dtype, np.float32))
    out[good] = values
    return out


class _RowGroups:
    """An open ``ParquetFile`` plus decoded row groups, least recently used first (per process).

    Groups are kept while they fit in ``budget`` bytes, and the two newest always (a batch of
    sorted rows spans neighbouring groups). A shuffled epoch touches every group in every batch:
    when the file's decoded columns fit the budget each group is decoded once per process, not
    once per batch.
    """

    def __init__(self, path: str, columns: list[str], list_shape: tuple[int, ...] | None, budget: int) -> None:
        self.file = require("pyarrow.parquet").ParquetFile(path)
        self.columns, self.list_shape, self.budget = columns, list_shape, budget
        self.groups: OrderedDict[int, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def get(self, group: int) -> np.ndarray:
        if group in self.groups:
            self.groups.move_to_end(group)
            return self.groups[group]
        data = decode_table(self.file.read_row_group(group, columns=self.columns), self.list_shape)
        self.groups[group] = data
        self.nbytes += data.nbytes
        while len(self.groups) > 2 and self.nbytes > self.budget:
            self.nbytes -= self.groups.popitem(last=False)[1].nbytes
        return data


class ParquetReader(Reader):
    """Rows built from ``columns`` of a Parquet file.

    Several numeric columns give tabular rows of shape ``(len(columns),)``; one numeric column
    gives scalars (e.g. labels); one list column gives arrays, reshaped to ``shape`` when given.
    Only the selected columns of the row groups a batch touches are read, never the whole file
    at once; decoded groups are kept up to ``cache_mb`` MiB per process (shuffled reads touch
    every group in every batch, so a file that fits is decoded once, not once per batch). Rows
    whose list has the wrong length, or that hold nulls, come back as NaN; :meth:`describe_row`
    says why.
    """

    def __init__(
        self,
        path: str | Path,
        columns: str | Sequence[str],
        shape: Sequence[int] | None = None,
        cache_mb: float = 256.0,
    ) -> None:
        pa, pq = require("pyarrow"), require("pyarrow.parquet")
        self.path = check_file(path)
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        self.source = f"'{self.path}' column{'s' if len(self.columns) > 1 else ''} {', '.join(self.columns)}"
        try:
            file = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"'{self.path}' is not a readable Parquet file ({err}).") from err
        types = self._column_types(file.schema_arrow)
        self._list = len(types) == 1 and _is_list(pa, types[0])
        self._shape, self._dtype = self._layout(pa, file, types, shape)
        meta = file.metadata
        self._offsets = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        if self._offsets[-1] == 0:
            raise DataError(f"Parquet file '{self.path}' has 0 rows; write data to it or remove it from the config.")
        list_shape = self._shape if self._list else None
        if not cache_mb >= 0:
            raise ConfigError(f"cache_mb={cache_mb} must be >= 0 (MiB of decoded row groups kept per process).")
        self._cache_bytes = int(cache_mb * 2**20)
        opener = functools.partial(_RowGroups, str(self.path), self.columns, list_shape, self._cache_bytes)
        self._groups = LazyHandle(opener)

    def _column_types(self, schema: Any) -> list[Any]:
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise MissingKeyError(f"Column(s) {missing} not found in '{self.path}'. Columns in the file: {schema.names}.")
        return [schema.field(c).type for c in self.columns]

    def _layout(self, pa: Any, file: Any, types: list[Any], shape: Sequence[int] | None) -> tuple[tuple, np.dtype]:
        if self._list:
            value_type = types[0].value_type
            if shape is None:
                shape = (types[0].list_size,) if pa.types.is_fixed_size_list(types[0]) else (self._first_length(file),)
            return tuple(shape), np.dtype(value_type.to_pandas_dtype())
        for column, kind in zip(self.columns, types):
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
                raise DataError(
                    f"Column '{column}' of '{self.path}' has type {kind}; select numeric columns or one list column."
                )
        dtype = np.result_type(*[np.dtype(t.to_pandas_dtype()) for t in types])
        return ((len(types),) if len(types) > 1 else ()), dtype

    def _first_length(self, file: Any) -> int:
        batch = next(file.iter_batches(batch_size=1, columns=self.columns))
        first = batch.column(0)[0].as_py()
        return len(first) if first is not None else 0

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        groups = np.searchsorted(self._offsets, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(groups)) + 1
        row_groups = self._groups.get()
        parts = [
            read_sorted(row_groups.get(int(groups[seg[0]])), rows[seg] - self._offsets[groups[seg[0]]])
            for seg in np.split(np.arange(len(rows)), cuts)
            if len(seg)
        ]
        if not parts:
            return np.empty((0, *self._shape), dtype=self._dtype)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def row_groups(self) -> RowGroups | None:
        """The file's row groups when their decoded columns pass ``cache_mb``; else None (a shuffle
        over all rows then decodes each group once per process)."""
        row_bytes = math.prod(self._shape) * self._dtype.itemsize
        if len(self) * row_bytes <= self._cache_bytes:
            return None
        # Two windows must fit: a batch at a window's end reads groups of the next one too.
        largest = int(np.diff(self._offsets).max()) * row_bytes
        return RowGroups(self._offsets.copy(), window=max(1, self._cache_bytes // max(largest, 1) // 2))

    def describe_row(self, row: int) -> str | None:
        group = int(np.searchsorted(self._offsets, row, side="right") - 1)
        table = self._groups.get().file.read_row_group(group, columns=self.columns)
        for name in self.columns:
            value = table.column(name)[row - int(self._offsets[group])].as_py()
            if value is None:
                return f"column '{name}' is null"
            if self._list and len(value) != math.prod(self._shape):
                return f"column '{name}' has {len(value)} values, expected {math.prod(self._shape)} (shape {self._shape})"
            if self._list and any(v is None for v in value):
                return f"column '{name}' contains a null"
        return None

    def fingerprint(self) -> str:
        return file_fingerprint(self.path, "parquet", self.columns, self._shape)


def _is_list(pa: Any, kind: Any) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
