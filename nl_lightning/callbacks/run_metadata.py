"""``RunMetadata``: record what reproduces a run — resolved config, git commit, versions, host, device, seed.

At fit start, rank 0 writes ``run_metadata.json`` in the run folder, logs the flattened values as hyperparameters
(``run/git/commit``, ``run/versions/torch``, ...) and attaches the JSON and LightningCLI's resolved
``config.yaml`` as artifacts where the logger keeps files (MLflow, W&B; TensorBoard and CSV have
them in their run folder already).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from nl_lightning._io import write_json
from nl_lightning.track.loggers import log_artifact, run_dir
from nl_lightning.track.metadata import flatten, run_metadata


class RunMetadata(L.Callback):
    """Log run metadata to every logger at the start of ``fit``."""

    def __init__(self, artifacts: bool = True) -> None:
        """
        Args:
            artifacts: attach ``run_metadata.json`` and ``config.yaml`` to loggers that keep files.
        """
        self.artifacts = artifacts
        self.metadata: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metadata = run_metadata(device=_device(trainer))
        config = _resolved_config(trainer)
        if config is not None:
            self.metadata["config"] = config
        self._publish(trainer)

    @rank_zero_only
    def _publish(self, trainer: L.Trainer) -> None:
        folder = run_dir(trainer.loggers, trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = write_json(folder / "run_metadata.json", self.metadata, default=str)
        params = {k: v for k, v in flatten(self.metadata, "run/").items() if not k.startswith("run/config")}
        config_file = folder / "config.yaml"
        for logger in trainer.loggers:
            logger.log_hyperparams(params)
            if self.artifacts:
                log_artifact(logger, path)
                if config_file.is_file():
                    log_artifact(logger, config_file)


def _device(trainer: L.Trainer) -> str:
    import torch

    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return f"{device} ({name}) x {trainer.world_size}" if name else f"{device} x {trainer.world_size}"


def _resolved_config(trainer: L.Trainer) -> dict[str, Any] | None:
    """The config LightningCLI resolved (all defaults filled), from its ``SaveConfigCallback``."""
    import yaml
    from lightning.pytorch.cli import SaveConfigCallback  # here: importing it loads jsonargparse

    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            text = callback.parser.dump(callback.config, skip_none=False)
            return yaml.safe_load(text)
    return None
