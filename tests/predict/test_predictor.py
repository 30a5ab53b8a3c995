"""Predictor: batch inference from a checkpoint or an ONNX export, through `nl-lightning predict`."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from model_files import raw_features

from nl_lightning.cli import main
from nl_lightning.data import ArrayDataModule
from nl_lightning.errors import DataError
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


def _cli_predict(source, out: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["predict", "--config", str(CONFIG), f"--model.init_args.source={source}", "--data.init_args.predict_path="
                 f"{out.parent / 'features.npy'}", f"--trainer.callbacks.init_args.output_dir={out}",
                 "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=8",
                 "--trainer.callbacks.init_args.rows_per_shard=8", *extra])
    return code, capsys.readouterr().err


def test_resuming_into_a_folder_of_another_model_or_backend_is_refused(regressor_version, tmp_path, capsys, monkeypatch):
    """`nl-lightning predict` into a folder an interrupted job of another model left: one line, exit 1,
    and the other model's rows are never merged (no manifest)."""
    from model_files import classifier, save

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    np.save(tmp_path / "features.npy", raw_features(40, seed=8))
    other = save(classifier(11, task="regression", num_classes=2), tmp_path / "other" / "model.ckpt")
    out = tmp_path / "predictions"
    assert _cli_predict(regressor_version[1], out, capsys)[0] == 0
    for shard in sorted(out.glob("part-*"))[2:]:  # as if the job had been killed after two shards
        shard.unlink()
    (out / "manifest.json").unlink()
    code, err = _cli_predict(other, out, capsys)
    assert code == 1 and "Traceback" not in err
    assert re.search(r"nl-lightning: error: .*predictions holds predictions of another model \(torch "
                     r"nl_lightning\.predict\.Predictor sha256 \w{12} then, torch nl_lightning\.predict\.Predictor sha256 "
                     r"\w{12} now\).*predict into a new output_dir, or set overwrite: true", err), err
    code, err = _cli_predict(regressor_version[1], out, capsys, "--model.init_args.backend=onnx")
    assert code == 1 and "holds predictions of another model (torch" in err and "then, onnx" in err, err
    assert not (out / "manifest.json").exists()
    assert _cli_predict(other, out, capsys, "--trainer.callbacks.init_args.overwrite=true")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["model_sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert manifest["data"]["files"] == [str(tmp_path / "features.npy")]


def test_sequences_longer_than_the_model_takes_are_refused_as_the_server_refuses_them(regressor_version, tmp_path):
    """The model (position: none) would run 9 steps; the server answers 422 for them, so must predict."""
    x = raw_features(20, seed=3, steps=9)
    with pytest.raises(DataError, match=r"Cannot predict 8 input row\(s\) of batch 0: 9 steps; the model takes at most "
                                        r"max_seq_len=8 \(input rows 0, 1, 2, 3, 4 \.\.\.\); the server answers 422"):
        predict(Predictor(str(regressor_version[1])), x, tmp_path)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_rows_the_model_answers_with_nan_are_an_error_naming_them(task, regressor_version, tmp_path):
    from model_files import classifier, save

    source = regressor_version[1] if task == "regression" else save(classifier(4), tmp_path / "cls" / "model.ckpt")
    x = raw_features(20, seed=3)
    x[13, 2, 1] = 3e38  # finite (the server accepts it), but the model overflows on it
    with pytest.raises(DataError, match=r"Cannot predict 1 input row\(s\) of batch 1: the model returned NaN or Inf "
                                        r"\(input rows 13\); the server answers 500"):
        predict(Predictor(str(source)), x, tmp_path / "out")
    assert len(list((tmp_path / "out").glob("part-*"))) == 0  # rows_per_shard=16: the first shard was not complete yet
