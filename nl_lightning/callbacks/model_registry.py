"""``ModelRegistryCallback``: register the best checkpoint in the MLflow Model Registry at fit end.

The best checkpoint of the Trainer's ``ModelCheckpoint`` (its last one when nothing is monitored)
becomes a new version of the registered model ``name``, as an MLflow pyfunc model that loads with
``weights_only=True`` (``track/registry.py``); when an ``ExportCallback`` ran, its ONNX file and
``manifest.json`` go into the same version. The version is tagged with the monitored metric and
its best value. It runs in ``teardown``, after every callback's ``on_fit_end`` (so after the
export), on rank 0, in the ``MLFlowLogger``'s run when there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from nl_lightning._compat import mlflow_tracking_uri
from nl_lightning.errors import ConfigError, MissingFileError
from nl_lightning.track.backends import DEFAULT_MLFLOW_URI, check_tracking_uri, require_logger
from nl_lightning.track.loggers import run_dir


class ModelRegistryCallback(L.Callback):
    """Register the best checkpoint (and the ONNX export) as a new MLflow model version."""

    def __init__(self, name: str | None = None, tracking_uri: str | None = None, include_export: bool = True) -> None:
        """
        Args:
            name: registered model name (default: the module's class name).
            tracking_uri: MLflow tracking/registry URI (default: the ``MLFlowLogger``'s, else
                ``sqlite:///runs/mlflow.db``).
            include_export: add the ``ExportCallback``'s ONNX model and manifest to the version.
        """
        require_logger("MLFlowLogger")
        self.name, self.tracking_uri, self.include_export = name, tracking_uri, include_export
        self.version: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            check_tracking_uri(self._uri(trainer), "ModelRegistryCallback tracking_uri")

    def _uri(self, trainer: L.Trainer) -> str:
        logger = _mlflow_logger(trainer)
        return self.tracking_uri or (mlflow_tracking_uri(logger) if logger is not None else DEFAULT_MLFLOW_URI)

    @rank_zero_only
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.state.status.value == "interrupted":
            return
        from nl_lightning.track.registry import register_checkpoint

        checkpoint, tags = _best_checkpoint(trainer)
        logger = _mlflow_logger(trainer)
        self.version = register_checkpoint(
            checkpoint, self.name or type(pl_module).__name__, self._uri(trainer),
            run_id=logger.run_id if logger is not None and self.tracking_uri in (None, mlflow_tracking_uri(logger)) else None,
            extra_files=_export_files(trainer) if self.include_export else None, tags=tags,
        )
        rank_zero_info(f"[registry] {self.version.name} version {self.version.version} <- {checkpoint}")


def _mlflow_logger(trainer: L.Trainer) -> Any:
    return next((lg for lg in trainer.loggers if type(lg).__name__ == "MLFlowLogger"), None)


def _best_checkpoint(trainer: L.Trainer) -> tuple[Path, dict[str, Any]]:
    callback = trainer.checkpoint_callback
    if callback is None:
        raise ConfigError("ModelRegistryCallback needs a ModelCheckpoint callback (enable_checkpointing=True).")
    best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    if not best:
        raise MissingFileError("ModelRegistryCallback: the ModelCheckpoint saved nothing to register.")
    tags: dict[str, Any] = {"checkpoint": Path(best).name, "global_step": trainer.global_step}
    monitor, score = getattr(callback, "monitor", None), getattr(callback, "best_model_score", None)
    if monitor and score is not None:
        tags.update({"monitor": monitor, monitor: float(score)})
    return Path(best), tags


def _export_files(trainer: L.Trainer) -> dict[str, Path]:
    from nl_lightning.callbacks.export import ExportCallback

    for callback in trainer.callbacks:
        if isinstance(callback, ExportCallback) and callback.manifest is not None:
            # where ExportCallback wrote; not Trainer.log_dir, which broadcasts (we run on rank 0 only)
            out_dir = Path(callback.dirpath or run_dir(trainer.loggers, trainer.default_root_dir) / "export")
            files = {"manifest.json": out_dir / "manifest.json"}
            for entry in callback.manifest["artifacts"]:
                if entry["format"] == "onnx":  # the model file and its external data, if any
                    files.update({Path(f["path"]).name: out_dir / f["path"] for f in entry["files"]})
            return files
    return {}
