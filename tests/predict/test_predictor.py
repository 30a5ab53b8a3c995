"""Predictor: batch inference from a checkpoint or an ONNX export, through `nl-lightning predict`."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from model_files import raw_features

from nl_lightning.cli import main
from nl_lightning.data import ArrayDataModule
from nl_lightning.predict import PredictionWriter, Predictor, read_predictions

CONFIG = Path(__file__).parents[2] / "configs" / "predict_files.yaml"


def predict(predictor: Predictor, x: np.ndarray, out: Path) -> dict[str, np.ndarray]:
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PredictionWriter(str(out), rows_per_shard=16)])
    trainer.predict(predictor, datamodule=ArrayDataModule(x_predict=x, batch_size=8))
    return read_predictions(out)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_both_backends_predict_what_the_model_computes(regressor_version, backend, tmp_path):
    model, folder = regressor_version
    x = raw_features(30, seed=7)
    got = predict(Predictor(str(folder), backend=backend, task="regression", threads=1), x, tmp_path)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    tolerance = 1e-6 if backend == "torch" else 1e-4
    np.testing.assert_allclose(got["values"], expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(got["row_id"], np.arange(30))


class CountingPredictor(Predictor):
    def forward(self, x):
        self.rows = getattr(self, "rows", 0) + len(x)
        return super().forward(x)


def test_a_resumed_job_runs_the_model_only_on_unwritten_shards(regressor_version, tmp_path):
    folder = regressor_version[1]
    x = raw_features(40, seed=9)
    first = predict(Predictor(str(folder)), x, tmp_path)
    last = sorted(tmp_path.glob("part-*"))[-1]  # rows 32-39: as if the job died before writing it
    last.unlink()
    (tmp_path / "_records" / f"{last.name}.json").unlink()
    (tmp_path / "manifest.json").unlink()
    counting = CountingPredictor(str(folder))
    resumed = predict(counting, x, tmp_path)
    assert counting.rows == 8
    np.testing.assert_array_equal(resumed["values"], first["values"])


def test_predict_config_runs_end_to_end(regressor_version, tmp_path, monkeypatch):
    """The shipped YAML, as its comment says to run it, from a fresh working directory."""
    model, folder = regressor_version
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    x = raw_features(40, seed=8)
    np.save(tmp_path / "features.npy", x)
    assert main(["predict", "--config", str(CONFIG), f"--model.init_args.source={folder}",
                 "--trainer.enable_progress_bar=false"]) == 0
    got = read_predictions(tmp_path / "predictions")
    with torch.no_grad():
        np.testing.assert_allclose(got["values"], model(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["row_id"], np.arange(40))


def test_a_missing_source_fails_when_predicting_not_when_parsing(tmp_path):
    predictor = Predictor(str(tmp_path / "nowhere"))  # building it (e.g. parsing a YAML) needs no file
    with pytest.raises(FileNotFoundError, match="model_dir '.*nowhere' does not exist"):
        predictor.setup("predict")
