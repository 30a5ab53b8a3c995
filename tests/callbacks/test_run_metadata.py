"""RunMetadata: git commit, versions, seed and device in TensorBoard's run folder and in MLflow
(params and artifacts read back with MlflowClient)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

from nl_lightning.callbacks import RunMetadata
from tracking_utils import mlflow_uri, tiny_classifier, tiny_data, trainer

REPO = Path(__file__).resolve().parents[2]


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML that reads python/object tags (the model's own hparams) as None instead of refusing."""


_PlainLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def test_metadata_reaches_tensorboard_folder_and_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # git commit of this checkout
    L.seed_everything(7)
    uri = mlflow_uri(tmp_path / "mlflow")
    tb = TensorBoardLogger(tmp_path / "runs", name="test")
    ml = MLFlowLogger(experiment_name="meta", tracking_uri=uri, artifact_location=(tmp_path / "art").as_uri())
    run = trainer(tmp_path, logger=[tb, ml], max_steps=2, callbacks=[RunMetadata()])
    run.fit(tiny_classifier(), tiny_data())

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    saved = json.loads((Path(tb.log_dir) / "run_metadata.json").read_text())
    assert saved["git"]["commit"] == commit and saved["seed"] == 7 and saved["device"] == "cpu x 1"
    assert saved["versions"]["lightning"] == L.__version__
    hparams = yaml.load((Path(tb.log_dir) / "hparams.yaml").read_text(), Loader=_PlainLoader)
    assert hparams["run/git/commit"] == commit

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    params = client.get_run(ml.run_id).data.params
    assert params["run/git/commit"] == commit and params["run/seed"] == "7"
    assert params["run/versions/torch"] == saved["versions"]["torch"]
    artifacts = [a.path for a in client.list_artifacts(ml.run_id, "run")]
    assert artifacts == ["run/run_metadata.json"]
    local = client.download_artifacts(ml.run_id, "run/run_metadata.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["git"]["commit"] == commit
