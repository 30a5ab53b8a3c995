"""ModelRegistryCallback: the best checkpoint and the ONNX export registered on a SQLite MLflow registry,
tagged with the validation metric; the registered model loads back and predicts like the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from nl_lightning.callbacks import ExportCallback, ModelRegistryCallback
from nl_lightning.export.bundle import ExportConfig
from nl_lightning.models import TransformerClassifier
from tracking_utils import mlflow_uri, tiny_classifier, tiny_data, trainer


def test_best_checkpoint_and_onnx_registered_and_loaded_back(tmp_path):
    import mlflow.pyfunc
    from mlflow import MlflowClient

    uri = mlflow_uri(tmp_path / "mlflow")
    logger = MLFlowLogger(experiment_name="reg", tracking_uri=uri, artifact_location=(tmp_path / "art").as_uri())
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max", save_top_k=1)
    export = ExportCallback(config=ExportConfig(formats=["onnx"]))  # default folder: found by the registry too
    registry = ModelRegistryCallback(name="tiny-classifier")
    run = trainer(tmp_path, logger=logger, max_steps=8, val_check_interval=4, enable_checkpointing=True,
                  callbacks=[checkpoint, registry, export])  # registry before export: it still sees the export
    run.fit(tiny_classifier(), tiny_data())

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("tiny-classifier", "1")
    assert version.run_id == logger.run_id
    assert version.tags["monitor"] == "val/acc"
    assert float(version.tags["val/acc"]) == float(checkpoint.best_model_score)
    assert version.tags["checkpoint"] == checkpoint.best_model_path.rsplit("/", 1)[-1]
    files = {a.path for a in client.list_artifacts(logger.run_id, "model/artifacts")}
    assert files == {"model/artifacts/" + f for f in (checkpoint.best_model_path.rsplit("/", 1)[-1], "model.onnx",
                                                       "manifest.json")}
    manifest = client.download_artifacts(logger.run_id, "model/artifacts/manifest.json", str(tmp_path / "dl"))
    assert json.loads(open(manifest).read())["artifacts"][0]["format"] == "onnx"

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    loaded = mlflow.pyfunc.load_model("models:/tiny-classifier/1")
    x = torch.randn(5, 8, 4)
    reference = TransformerClassifier.load(checkpoint.best_model_path).eval()
    with torch.no_grad():
        expected = reference(x).numpy()
    np.testing.assert_allclose(loaded.predict(x.numpy()), expected, rtol=0, atol=0)
