"""Register a checkpoint in the MLflow Model Registry, with its ONNX export and manifest beside it.

Through ``MlflowClient`` only (no global tracking URI is changed): the checkpoint becomes an MLflow
pyfunc model (``mlflow_model.py``, loaded with ``weights_only=True``) logged under the run's
``model/`` artifacts, then a new version of the registered model points at it, tagged with the
validation metric. ``mlflow.pyfunc.load_model("models:/<name>/<version>")`` loads it back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nl_lightning.errors import MissingFileError

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
PIP_REQUIREMENTS = ["nl-lightning", "torch", "lightning", "mlflow"]


def register_checkpoint(
    checkpoint: str | Path, name: str, tracking_uri: str, run_id: str | None = None,
    extra_files: dict[str, str | Path] | None = None, tags: dict[str, Any] | None = None,
    experiment_name: str = "model_registry",
) -> Any:
    """Log ``checkpoint`` (plus ``extra_files``: {artifact name: path}) as a pyfunc model in ``run_id``
    (a new run of ``experiment_name`` when None) and register it as a new version of ``name``.

    Returns MLflow's ``ModelVersion``; its tags hold ``tags`` (e.g. the monitored metric).
    """
    import mlflow.pyfunc
    from mlflow import MlflowClient

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(f"No checkpoint to register at {checkpoint}; was a ModelCheckpoint saved?")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if run_id is None:
        run_id = client.create_run(_experiment_id(client, experiment_name)).info.run_id
    artifacts = {"checkpoint": str(checkpoint)}
    artifacts.update({key: str(path) for key, path in (extra_files or {}).items()})
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        mlflow.pyfunc.save_model(model_dir, python_model=str(MODEL_CODE), artifacts=artifacts,
                                 pip_requirements=PIP_REQUIREMENTS)
        client.log_artifacts(run_id, str(model_dir), "model")
    _create_registered_model(client, name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    str_tags = {k: str(v) for k, v in (tags or {}).items()}
    return client.create_model_version(name, source, run_id=run_id, tags=str_tags)


def _create_registered_model(client: Any, name: str) -> None:
    """Create ``name`` in the registry unless it exists: the rule of ``mlflow.register_model``, which
    reads the process-wide tracking URI (this module takes one per call). Creating first is race-free
    (two runs registering one name); any failure but "already exists" is raised as MLflow gave it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)
