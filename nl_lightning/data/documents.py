"""Documents for language modelling: each text file is one document, each Parquet row another.

Shared by ``TokenizedTextDataModule`` and ``nl-lightning tokenizer train``, so both read the same
text the same way. Paths are files or glob patterns (``data/**/*.txt``), expanded in sorted order.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

from nl_lightning.errors import NLUserError

__all__ = ["DocumentError", "expand_paths", "iter_documents"]

PARQUET_SUFFIXES = (".parquet", ".pq")


class DocumentError(NLUserError, ValueError):
    """Text input that cannot be read: no file matches, an empty or non-UTF-8 file, a bad column."""


def expand_paths(paths: str | list[str]) -> list[Path]:
    """Files named by ``paths`` (files or glob patterns), sorted, each once."""
    patterns = [paths] if isinstance(paths, str) else list(paths)
    if not patterns:
        raise DocumentError("No text files given: pass paths (a file, a list, or a glob such as 'data/*.txt').")
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise DocumentError(
                f"No file matches {pattern!r} (working directory {Path.cwd()}). Check the path or the glob; "
                "folders are not read, name their files ('folder/*.txt')."
            )
        found.update(dict.fromkeys(files))
    return list(found)


def iter_documents(files: list[Path], text_column: str = "text") -> Iterator[str]:
    """The documents of ``files``: a whole text file, or each non-null row of a Parquet ``text_column``."""
    for path in files:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            yield from _parquet_rows(path, text_column)
        else:
            yield _text_file(path)


def _text_file(path: Path) -> str:
    data = path.read_bytes()
    if not data:
        raise DocumentError(f"Text file {path} is empty (0 bytes): an interrupted copy? Remove it or give it text.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DocumentError(
            f"Text file {path} is not UTF-8 (byte {err.start}: {data[err.start:err.start + 4]!r}); convert it, "
            "e.g. iconv -f latin1 -t utf-8."
        ) from None


def _parquet_rows(path: Path, column: str) -> Iterator[str]:
    from nl_lightning.data.readers.base import require

    pq = require("pyarrow.parquet")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow's ArrowInvalid & co.
        raise DocumentError(f"{path} is not a readable Parquet file ({err}); re-write or remove it.") from None
    names = parquet.schema_arrow.names
    if column not in names:
        raise DocumentError(f"{path} has no column {column!r}; its columns are {names}. Set text_column.")
    row = 0
    for group in range(parquet.num_row_groups):
        values = parquet.read_row_group(group, columns=[column]).column(0).to_pylist()
        for value in values:
            if value is not None and not isinstance(value, str):
                raise DocumentError(
                    f"{path} column {column!r} row {row} holds {type(value).__name__}, not text; pick a string column."
                )
            if value is None:
                raise DocumentError(f"{path} column {column!r} row {row} is null; drop or fill the null rows.")
            row += 1
            yield value
