"""Row checks (NaN / Inf, shape, dtype conversion) under a ``raise`` / ``drop`` / ``warn`` policy."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from nl_lightning.data.readers.base import Reader
from nl_lightning.errors import ConfigError, DataError

OnBad = Literal["raise", "drop", "warn"]
SCAN_BYTES = 64 * 2**20  # rows per scan chunk: about this many bytes


class DataValidationError(DataError):
    """A sample failed a check; the message names the file, key or column and row."""


@dataclass
class ScanResult:
    """Rows kept after a scan, rows found bad, and the first problem in words."""

    rows: np.ndarray
    bad: np.ndarray
    first: str | None = None


def resolve_dtype(name: str | None, stored: np.dtype) -> np.dtype:
    """``name`` as a dtype; ``None`` / ``"auto"`` keeps floats as float32 and integers as int64."""
    if name not in (None, "auto"):
        return np.dtype(name)
    return np.dtype(np.int64) if stored.kind in "iub" else np.dtype(np.float32)


def check_sample_shape(reader: Reader, declared: Sequence[int] | None) -> tuple[int, ...]:
    """The shape samples are returned in: the stored one, or ``declared`` when the sizes agree."""
    if declared is None:
        return reader.sample_shape
    declared = tuple(int(d) for d in declared)
    if math.prod(declared) != math.prod(reader.sample_shape):
        raise DataValidationError(
            f"{reader.source} holds samples of shape {reader.sample_shape} but the declared shape is "
            f"{declared}. Fix feature_shape in the config (shapes with as many elements are reshaped)."
        )
    return declared


def check_dtype(reader: Reader, dtype: np.dtype) -> None:
    """Refuse conversions that lose meaning (complex or non-numeric data)."""
    if reader.dtype.kind not in "biuf":
        raise DataValidationError(
            f"{reader.source} has dtype {reader.dtype}, which cannot be converted to {dtype}; store numeric data."
        )


def check_lengths(features: Reader, targets: Reader | None) -> None:
    """Features and targets must pair up row for row."""
    if targets is not None and len(features) != len(targets):
        raise DataValidationError(
            f"Features {features.source} have {len(features)} rows but targets {targets.source} have "
            f"{len(targets)}; there must be one target per sample. Check the keys / columns and files."
        )


def find_bad_rows(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Boolean mask of rows with NaN / Inf or values that ``dtype`` cannot hold exactly."""
    flat = values.reshape(len(values), -1)
    bad = np.zeros(len(values), dtype=bool)
    if flat.dtype.kind == "f":
        finite = np.isfinite(flat)
        bad |= ~finite.all(axis=1)
        flat = np.where(finite, flat, 0)
    if dtype.kind in "iu" and flat.dtype.kind in "fiu":
        info = np.iinfo(dtype)
        bad |= ((flat < info.min) | (flat > info.max)).any(axis=1)
        if flat.dtype.kind == "f":
            bad |= (flat != np.round(flat)).any(axis=1)
    elif dtype.kind == "f" and np.finfo(dtype).max < np.abs(flat).max(initial=0):
        with np.errstate(over="ignore"):
            bad |= ~np.isfinite(flat.astype(dtype)).all(axis=1)
    return bad


def describe_value(sample: np.ndarray, dtype: np.dtype) -> str:
    """Why one sample failed :func:`find_bad_rows`, in words."""
    flat = np.asarray(sample).reshape(-1)
    if flat.dtype.kind == "f" and np.isnan(flat).any():
        return "contains NaN"
    if flat.dtype.kind == "f" and np.isinf(flat).any():
        return "contains Inf"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = flat[(flat < info.min) | (flat > info.max) | (flat != np.round(flat))]
        return f"value {out[0].item()} cannot be converted to {dtype} exactly"
    return f"a value overflows {dtype}"


def scan_rows(sources: Sequence[tuple[Reader, np.dtype]], on_bad: OnBad = "raise") -> ScanResult:
    """One streaming pass over aligned readers; the rows to keep under ``on_bad``.

    ``raise`` stops at the first bad row, ``drop`` leaves bad rows out, ``warn`` keeps them;
    both of the latter warn once with the count and the first problem.
    """
    if on_bad not in ("raise", "drop", "warn"):
        raise ConfigError(f"on_bad must be 'raise', 'drop' or 'warn'; got {on_bad!r}.")
    n = len(sources[0][0])
    row_bytes = max(1, max(math.prod(r.sample_shape) * r.dtype.itemsize for r, _ in sources))
    chunk = max(1, SCAN_BYTES // row_bytes)
    found: list[np.ndarray] = []
    first = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        for reader, dtype in sources:
            values = reader.read_range(start, stop)
            rows = np.flatnonzero(find_bad_rows(values, dtype)) + start
            if len(rows) == 0:
                continue
            if first is None:
                reason = reader.describe_row(int(rows[0])) or describe_value(values[rows[0] - start], dtype)
                first = f"{reader.locate(int(rows[0]))}: {reason}"
            if on_bad == "raise":
                raise DataValidationError(
                    f"{first}. Fix the data, or set on_bad='drop' to skip bad rows ('warn' keeps them)."
                )
            found.append(rows)
    bad = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    if len(bad):
        action = "dropped" if on_bad == "drop" else "kept (on_bad='warn')"
        warnings.warn(f"{len(bad)} bad row(s) {action} out of {n}; first: {first}.", stacklevel=2)
    rows = np.setdiff1d(np.arange(n), bad) if on_bad == "drop" else np.arange(n)
    return ScanResult(rows=rows, bad=bad, first=first)
