"""register_checkpoint: a second registration of a name is its next version; a registry failure other
than "the name exists" reaches the caller as MLflow raised it (nothing swallowed, nothing retried)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from nl_lightning.track.registry import register_checkpoint
from tracking_utils import mlflow_uri, tiny_classifier, trainer


@pytest.fixture
def checkpoint(tmp_path):
    run = trainer(tmp_path, logger=False)
    run.strategy.connect(tiny_classifier())
    path = tmp_path / "tiny.ckpt"
    run.save_checkpoint(path)
    return path


def test_each_registration_of_a_name_is_a_new_version(tmp_path, checkpoint):
    uri = mlflow_uri(tmp_path / "mlflow")
    first = register_checkpoint(checkpoint, "tiny", uri, tags={"round": 1})
    second = register_checkpoint(checkpoint, "tiny", uri, tags={"round": 2})
    assert (int(first.version), int(second.version)) == (1, 2)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [v.tags["round"] for v in sorted(client.search_model_versions("name='tiny'"), key=lambda v: int(v.version))] \
        == ["1", "2"]


def test_a_registry_failure_is_raised_as_mlflow_gave_it(tmp_path, checkpoint, monkeypatch):
    def unavailable(self, name, *args, **kwargs):
        raise MlflowException(f"registry store for {name!r} is read-only", error_code=TEMPORARILY_UNAVAILABLE)

    monkeypatch.setattr(MlflowClient, "create_registered_model", unavailable)
    with pytest.raises(MlflowException, match=r"registry store for 'tiny' is read-only"):
        register_checkpoint(checkpoint, "tiny", mlflow_uri(tmp_path / "mlflow"))
