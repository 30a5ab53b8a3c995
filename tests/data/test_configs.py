"""The shipped HDF5 / Parquet configs train TransformerClassifier through `nl-lightning fit`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nl_lightning.cli import build_cli, main

CONFIGS = Path(__file__).parents[2] / "configs"


def _hdf5(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 16, 8)).astype(np.float32)
    with h5py.File(folder / "train.h5", "w") as f:
        f["x"], f["y"] = x, x[:, :, :3].mean(1).argmax(-1)
    return folder / "train.h5"


def _parquet(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((96, 8)).astype(np.float32)
    columns = {f"f{i}": rows[:, i] for i in range(8)}
    pq.write_table(pa.table({**columns, "label": rows[:, :3].argmax(-1)}), folder / "train.parquet", row_group_size=32)
    return folder / "train.parquet"


@pytest.mark.slow
@pytest.mark.parametrize("name, make", [("classifier_hdf5", _hdf5), ("classifier_parquet", _parquet)])
def test_config_fits_through_the_cli(name, make, tmp_path):
    data = make(tmp_path)
    command = [
        sys.executable, "-m", "nl_lightning", "fit", "--config", str(CONFIGS / f"{name}.yaml"),
        f"--data.init_args.train_path={data}", "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["classifier_hdf5", "classifier_parquet"])
def test_config_uses_the_file_datamodule(name, monkeypatch):
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert config["data"]["class_path"] == "nl_lightning.data.FileDataModule"
    transforms = '[{"class_path": "nl_lightning.data.RandomNoise", "init_args": {"std": 0.05}}]'
    cli = build_cli(["--config", str(CONFIGS / f"{name}.yaml"), f"--data.init_args.transforms={transforms}"], run=False)
    assert cli.datamodule.transforms[0].std == 0.05
    assert cli.datamodule.val_fraction == 0.1


def test_missing_data_file_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    args = ["fit", "--config", str(CONFIGS / "classifier_hdf5.yaml"), "--data.init_args.train_path=missing.h5",
            "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"]
    assert main(args) == 1
    assert "nl-lightning: error: Data file not found: 'missing.h5'" in capsys.readouterr().err
