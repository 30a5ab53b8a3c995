"""Row validation: NaN / Inf, declared shape, dtype conversion, under raise / drop / warn."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafiles import FORMATS, file_datamodule_kwargs, write

from nl_lightning.data import DataValidationError, FileDataModule
from nl_lightning.data.readers import MemoryReader
from nl_lightning.data.validate import find_bad_rows, scan_rows

LOCATION = {
    "npy": r"x\.npy' row {row}",
    "npz": r"data\.npz' key 'x' row {row}",
    "npz_compressed": r"data\.npz' key 'x' row {row}",
    "hdf5": r"data\.h5' dataset '/group/x' row {row}",
    "parquet": r"data\.parquet' column x row {row}",
    "pt": r"data\.pt' key 'x' row {row}",
}


def _module(spec, **kwargs):
    return FileDataModule(**file_datamodule_kwargs(spec), **kwargs)


@pytest.mark.filterwarnings("ignore:.*compressed")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_and_inf_name_file_key_and_row(fmt, bad, arrays, tmp_path):
    x, y = arrays
    x[7, 1, 2] = bad
    dm = _module(write(fmt, tmp_path, x, y))
    what = "NaN" if np.isnan(bad) else "Inf"
    with pytest.raises(DataValidationError, match=LOCATION[fmt].format(row=7) + f": contains {what}.*on_bad='drop'"):
        dm.setup("fit")


@pytest.mark.filterwarnings("ignore:.*compressed")
@pytest.mark.parametrize("fmt", FORMATS)
def test_drop_removes_bad_rows_and_counts_them(fmt, arrays, tmp_path):
    x, y = arrays
    x[[3, 20, 21], 2, 1] = np.nan
    dm = _module(write(fmt, tmp_path, x, y), on_bad="drop", shuffle=False, batch_size=64)
    with pytest.warns(UserWarning, match=r"3 bad row\(s\) dropped out of 40; first: .*row 3: contains NaN"):
        dm.setup("fit")
    assert dm.bad_rows == {"train": 3}
    batch = next(iter(dm.train_dataloader()))
    kept = batch["x"][:, 0, 0].long().tolist()  # x[:, 0, 0] holds the row index
    assert kept == [r for r in range(40) if r not in (3, 20, 21)]
    assert np.isfinite(batch["x"].numpy()).all()


def test_warn_keeps_bad_rows_and_counts_them(arrays):
    x, y = arrays
    x[[5, 9], 0, 1] = np.inf
    with pytest.warns(UserWarning, match=r"2 bad row\(s\) kept \(on_bad='warn'\) out of 40"):
        result = scan_rows([(MemoryReader(x), np.dtype("float32"))], "warn")
    assert len(result.rows) == 40 and result.bad.tolist() == [5, 9]


def test_bad_targets_are_found_too(arrays, tmp_path):
    x, y = arrays
    y = y.astype(np.float64)
    y[11] = 1.5
    dm = _module(write("hdf5", tmp_path, x, y), target_dtype="int64")
    with pytest.raises(DataValidationError, match=r"'/group/y' row 11: value 1.5 cannot be converted to int64"):
        dm.setup("fit")


def test_float16_overflow_is_a_bad_row():
    values = np.array([[1.0], [1e6]])
    assert find_bad_rows(values, np.dtype("float16")).tolist() == [False, True]
    with pytest.raises(DataValidationError, match=r"<array> row 1: a value overflows float16"):
        scan_rows([(MemoryReader(values), np.dtype("float16"))])


def test_declared_shape_must_match(arrays, tmp_path):
    x, y = arrays
    dm = _module(write("hdf5", tmp_path, x, y), feature_shape=[5])
    with pytest.raises(DataValidationError, match=re.escape("holds samples of shape (3, 4) but the declared shape is (5,)")):
        dm.setup("fit")


def test_declared_shape_with_as_many_elements_reshapes(arrays, tmp_path):
    x, y = arrays
    dm = _module(write("hdf5", tmp_path, x, y), feature_shape=[12], shuffle=False)
    batch = next(iter(dm.train_dataloader()))
    np.testing.assert_array_equal(batch["x"].numpy(), x[:32].reshape(32, 12))


def test_parquet_nulls_and_ragged_lists_are_explained(tmp_path):
    values = [[1.0, 2.0], [3.0], None, [4.0, None], [5.0, 6.0]]
    pq.write_table(pa.table({"x": values, "y": [0, 1, 0, 1, 0]}), tmp_path / "r.parquet")
    dm = FileDataModule(train_path=str(tmp_path / "r.parquet"), on_bad="drop", batch_size=8, shuffle=False)
    with pytest.warns(UserWarning, match=r"3 bad row\(s\) dropped.*row 1: column 'x' has 1 values, expected 2"):
        dm.setup("fit")
    np.testing.assert_array_equal(next(iter(dm.train_dataloader()))["x"].numpy(), [[1.0, 2.0], [5.0, 6.0]])
    strict = FileDataModule(train_path=str(tmp_path / "r.parquet"))
    with pytest.raises(DataValidationError, match="row 1: column 'x' has 1 values, expected 2"):
        strict.setup("fit")


def test_parquet_null_in_scalar_column(tmp_path):
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "y": [0, 1, 1]}), tmp_path / "n.parquet")
    dm = FileDataModule(train_path=str(tmp_path / "n.parquet"), features=["a", "b"])
    with pytest.raises(DataValidationError, match=r"columns a, b row 1: column 'a' is null"):
        dm.setup("fit")


def test_validate_false_skips_the_scan(arrays, tmp_path):
    x, y = arrays
    x[0, 0, 1] = np.nan
    dm = _module(write("hdf5", tmp_path, x, y), validate=False)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 40 and dm.bad_rows == {}
