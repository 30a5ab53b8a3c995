"""Every user error names the thing and the fix (missing file / key / column, lengths, format, args)."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from datafiles import FORMATS, file_datamodule_kwargs, write

from nl_lightning.data import ArrayDataModule, DataValidationError, FileDataModule
from nl_lightning.data.readers import MissingKeyError, open_reader


def test_missing_file(tmp_path):
    dm = FileDataModule(train_path=str(tmp_path / "nope.h5"))
    with pytest.raises(FileNotFoundError, match=r"Data file not found: '.*nope\.h5'.*train_path"):
        dm.setup("fit")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".parquet", ".pt"])
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"empty{suffix}").touch()
    with pytest.raises(ValueError, match=r"Data file is empty \(0 bytes\): '.*empty"):
        open_reader(tmp_path / f"empty{suffix}", "x")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".parquet", ".pt"])
def test_corrupt_file(tmp_path, suffix):
    (tmp_path / f"bad{suffix}").write_bytes(b"not data at all" * 10)
    with pytest.raises(ValueError, match=r"bad\.\w+' (is not a valid|is not a readable|could not be loaded)"):
        open_reader(tmp_path / f"bad{suffix}", "x")


def test_zero_rows(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="has 0 rows"):
        open_reader(tmp_path / "e.npy", None)


@pytest.mark.filterwarnings("ignore:.*compressed")
@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_key_lists_what_exists(fmt, arrays, tmp_path):
    x, y = arrays
    spec = write(fmt, tmp_path, x, y)
    dm = FileDataModule(**{**file_datamodule_kwargs(spec), "targets": "labels"})
    with pytest.raises(MissingKeyError, match=r"'labels'\]? not found in .*in the (file|folder): \[.*x'"):
        dm.setup("fit")


def test_missing_parquet_column_lists_columns(arrays, tmp_path):
    x, y = arrays
    spec = write("parquet", tmp_path, x, y)
    with pytest.raises(MissingKeyError, match=r"Column\(s\) \['z'\] not found .* Columns in the file: \['x', 'y'\]"):
        open_reader(spec["path"], ["x", "z"])


def test_non_numeric_parquet_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": ["a", "b"], "v": [1.0, 2.0]}), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="Column 'name' .* has type string; select numeric columns"):
        open_reader(tmp_path / "s.parquet", ["name", "v"])


def test_features_and_targets_of_different_lengths(arrays, tmp_path):
    x, y = arrays
    spec = write("npz", tmp_path, x, y[:30])
    with pytest.raises(DataValidationError, match="have 40 rows but targets .* have 30; there must be one target"):
        FileDataModule(**file_datamodule_kwargs(spec)).setup("fit")


def test_unknown_format(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"Unknown data format for '.*data\.csv' \(suffix '\.csv'\).*set the format"):
        FileDataModule(train_path=str(tmp_path / "data.csv")).setup("fit")
    with pytest.raises(ValueError, match="Unknown data format 'csv'; use one of"):
        open_reader(tmp_path / "data.csv", "x", format="csv")  # type: ignore[arg-type]


def test_single_npy_file_cannot_hold_targets(arrays, tmp_path):
    np.save(tmp_path / "x.npy", arrays[0])
    with pytest.raises(ValueError, match="single .npy file .* set targets: null"):
        FileDataModule(train_path=str(tmp_path / "x.npy")).setup("fit")
    dm = FileDataModule(train_path=str(tmp_path / "x.npy"), targets=None)
    dm.setup("fit")
    assert set(next(iter(dm.train_dataloader()))) == {"x", "row_id"}


def test_list_of_columns_only_for_parquet(arrays, tmp_path):
    spec = write("hdf5", tmp_path, *arrays)
    with pytest.raises(ValueError, match="Only Parquet takes a list of columns"):
        open_reader(spec["path"], ["a", "b"])


def test_no_training_data():
    with pytest.raises(ValueError, match="No training data for the train split: set train_path"):
        FileDataModule().setup("fit")
    with pytest.raises(ValueError, match=r"No training data.*pass x_train="):
        ArrayDataModule().setup("fit")


def test_normalize_without_training_data_or_checkpoint(arrays):
    dm = ArrayDataModule(x_val=arrays[0], y_val=arrays[1], normalize=True)
    with pytest.raises(ValueError, match="normalize=True .*ckpt_path=.*load_state_dict"):
        dm.val_dataloader()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size must be >= 1; got 0"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"prefetch_factor": 4}, "prefetch_factor=4 needs num_workers > 0"),
        ({"on_bad": "skip"}, "on_bad must be 'raise', 'drop' or 'warn'; got 'skip'"),
        ({"on_bad": "drop", "validate": False}, "on_bad='drop' needs validate=True"),
        ({"transform_on": "gpu"}, "transform_on must be 'sample' or 'batch'"),
        ({"cache": "redis"}, "cache must be 'none', 'memory', 'disk' or 'hybrid'"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \[0, 1\); got 1.5"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must leave rows"),
        ({"val_fraction": 0.1, "val_path": "v.h5"}, "Set val_path or val_fraction, not both"),
        ({"test_fraction": 0.1, "test_path": "t.h5"}, "Set test_path or test_fraction, not both"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FileDataModule(train_path="t.h5", **kwargs)


def test_y_without_x():
    with pytest.raises(ValueError, match="y_val is given without x_val"):
        ArrayDataModule(x_train=np.zeros((4, 2)), y_val=np.zeros(4))


def test_non_numeric_array():
    with pytest.raises(ValueError, match="dtype object; pass a numeric array"):
        ArrayDataModule(x_train=np.array([object()] * 3)).setup("fit")


def test_checkpoint_without_normalize_stats(tmp_path):
    from nl_lightning.data import Normalize

    torch.save({"state_dict": {}, "FileDataModule": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(KeyError, match="No Normalize statistics in checkpoint .* normalize=True"):
        Normalize.from_checkpoint(tmp_path / "plain.ckpt")
