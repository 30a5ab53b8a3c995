"""Prediction shards: columns of arrays to bytes and back (NPY, NPZ, JSONL, Parquet), atomically.

A shard is built in memory and written with ``_io.write_atomic`` (which returns its SHA-256),
so a reader (or a resumed job) sees a complete shard or none. Every format is data only (NumPy files are read with ``allow_pickle=False``): a prediction
folder never runs code when read. Pickle is not offered for that reason.
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

import numpy as np

from nl_lightning.errors import ConfigError

ShardFormat = Literal["parquet", "npy", "npz", "jsonl"]
SUFFIXES: dict[str, str] = {"parquet": ".parquet", "npy": ".npy", "npz": ".npz", "jsonl": ".jsonl"}
Columns = dict[str, np.ndarray]


def check_format(fmt: str) -> None:
    if fmt == "pickle":
        raise ConfigError(
            "format='pickle' is not offered: pickle files run code when they are read. Use npz (any numeric "
            "columns, NumPy only), parquet, npy or jsonl."
        )
    if fmt not in SUFFIXES:
        raise ConfigError(f"format={fmt!r} is not supported; choose one of {tuple(SUFFIXES)}.")
    if fmt == "parquet":
        from nl_lightning._imports import PYARROW_AVAILABLE, require

        require(PYARROW_AVAILABLE, "pyarrow", "data", "Writing Parquet shards")


def column_specs(columns: Columns) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape"}}`` of each column's rows, recorded in the manifest for decoding."""
    return {name: {"dtype": str(values.dtype), "shape": list(values.shape[1:])} for name, values in columns.items()}


def encode_shard(columns: Columns, fmt: str) -> bytes:
    """``columns`` (each (N, ...), ``row_id`` first) as the bytes of one file in ``fmt``."""
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **columns)
        return buffer.getvalue()
    if fmt == "npy":  # one structured array: a field per column, sub-array fields for vectors
        n = len(columns["row_id"])
        record = np.empty(n, dtype=[(name, v.dtype, v.shape[1:]) for name, v in columns.items()])
        for name, values in columns.items():
            record[name] = values
        buffer = io.BytesIO()
        np.save(buffer, record, allow_pickle=False)
        return buffer.getvalue()
    if fmt == "jsonl":
        names = list(columns)
        rows = zip(*(columns[name].tolist() for name in names))
        return "".join(json.dumps(dict(zip(names, row))) + "\n" for row in rows).encode()
    check_format(fmt)
    return _parquet_bytes(columns)


def decode_shard(data: bytes, fmt: str, specs: dict[str, dict[str, Any]]) -> Columns:
    """The columns of a shard written by :func:`encode_shard` (``specs`` from the manifest)."""
    check_format(fmt)
    if fmt == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in specs}
    if fmt == "npy":
        record = np.load(io.BytesIO(data), allow_pickle=False)
        return {name: np.ascontiguousarray(record[name]) for name in specs}
    if fmt == "jsonl":
        rows = [json.loads(line) for line in data.decode().splitlines() if line]
        return {name: _array([row[name] for row in rows], spec) for name, spec in specs.items()}
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    return {name: _from_arrow(table.column(name), spec) for name, spec in specs.items()}


def _parquet_bytes(columns: Columns) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        if values.ndim == 1:
            arrays[name] = pa.array(values)
        else:  # one fixed-size list per row, flattened; the manifest keeps the row shape
            width = int(np.prod(values.shape[1:]))
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue().to_pybytes()


def _from_arrow(column: Any, spec: dict[str, Any]) -> np.ndarray:
    if not spec["shape"]:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=spec["dtype"])
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(spec["dtype"], copy=False).reshape(-1, *spec["shape"])


def _array(values: list[Any], spec: dict[str, Any]) -> np.ndarray:
    return np.asarray(values, dtype=spec["dtype"]).reshape(-1, *spec["shape"])
