"""Documents for language modelling: globs expand sorted; each text file or Parquet row is one
document; empty, non-UTF-8 or unmatched inputs are refused naming the file and the fix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nl_lightning.data.documents import DocumentError, expand_paths, iter_documents


def test_globs_and_files_expand_sorted_and_once(tmp_path):
    for name in ("b.txt", "a.txt", "sub/c.txt", "notes.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    files = expand_paths([str(tmp_path / "**/*.txt"), str(tmp_path / "a.txt")])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.txt", "b.txt", "sub/c.txt"]
    assert list(iter_documents(files)) == ["a.txt", "b.txt", "sub/c.txt"]


def test_parquet_rows_are_documents(tmp_path):
    pq.write_table(pa.table({"id": [1, 2, 3], "body": ["one", "", "three"]}), tmp_path / "d.parquet", row_group_size=2)
    assert list(iter_documents(expand_paths(str(tmp_path / "d.parquet")), "body")) == ["one", "", "three"]


@pytest.mark.parametrize(("paths", "match"), [
    ("missing/*.txt", r"No file matches 'missing/\*\.txt' \(working directory"),
    ("nope.txt", r"No file matches 'nope\.txt'"),
    ([], r"No text files given"),
])
def test_paths_matching_nothing_are_refused(paths, match):
    with pytest.raises(DocumentError, match=match):
        expand_paths(paths)


def test_an_empty_or_non_utf8_text_file_is_named(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DocumentError, match=r"empty\.txt is empty \(0 bytes\).*Remove it or give it text"):
        list(iter_documents([tmp_path / "empty.txt"]))
    with pytest.raises(DocumentError, match=r"latin\.txt is not UTF-8 \(byte 3: b'\\xe9'\); convert it"):
        list(iter_documents([tmp_path / "latin.txt"]))


@pytest.mark.parametrize(("table", "match"), [
    ({"body": ["a"]}, r"has no column 'text'; its columns are \['body'\]\. Set text_column"),
    ({"text": ["a", None]}, r"column 'text' row 1 is null; drop or fill the null rows"),
    ({"text": [1, 2]}, r"column 'text' row 0 holds int, not text"),
])
def test_bad_parquet_columns_are_named(table, match, tmp_path):
    pq.write_table(pa.table(table), tmp_path / "d.parquet")
    with pytest.raises(DocumentError, match=match):
        list(iter_documents([tmp_path / "d.parquet"]))


def test_a_corrupt_parquet_file_is_named(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DocumentError, match=r"bad\.parquet is not a readable Parquet file"):
        list(iter_documents([tmp_path / "bad.parquet"]))
