"""``ExportCallback``: at fit end, write the trained model in the chosen formats plus a manifest.

A thin hook over ``nl_lightning.export.export_formats``: the formats, parity tolerances and
calibration size come from an ``ExportConfig``; static INT8 is calibrated, and INT8 artifacts are
checked, on the validation DataLoader. The weights are the monitored best checkpoint by default
(``callbacks/best_weights.py``); the manifest's ``weights`` entry says which, with its SHA-256, and
its ``data`` entry what INT8 was calibrated on. The export runs on rank 0; under FSDP2
(``ModelParallelStrategy``) every rank first takes part in gathering the full weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from nl_lightning.callbacks.best_weights import ExportWeights, exported_weights
from nl_lightning.errors import SetupError
from nl_lightning.export.bundle import QUANTIZED_FORMATS, ExportConfig, export_formats
from nl_lightning.export.signature import signature_of
from nl_lightning.export.gather import gather_unsharded, is_sharded
from nl_lightning.track.loggers import run_dir as logger_run_dir


class ExportCallback(L.Callback):
    """Export ``pl_module.model`` (or the module) at the end of ``fit``."""

    def __init__(self, dirpath: str | None = None, config: ExportConfig | None = None,
                 weights: ExportWeights = "best") -> None:
        """
        Args:
            dirpath: output folder, replaced as a whole (default: ``export/`` in the run's folder, the
                first logger's ``log_dir``, beside ``checkpoints/``; ``<default_root_dir>/export``
                without a logger).
            config: formats and checks (default: ONNX, ORT-optimized ONNX, ORT dynamic INT8).
            weights: ``best``: the checkpoint a ``ModelCheckpoint(monitor=...)`` kept as best (the final
                weights when none monitors a metric); ``last``: the weights at the end of fit.
        """
        self.dirpath, self.weights = dirpath, weights
        self.config = _as_config(config)
        self.manifest: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if "tensorrt" in self.config.formats:
            from nl_lightning.export.tensorrt import check_tensorrt

            check_tensorrt()  # before training, not after it

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = model_on_rank_zero(trainer, pl_module)
        if model is None:
            return
        out_dir = Path(self.dirpath or run_dir(trainer) / "export")
        needs_data = any(f in QUANTIZED_FORMATS for f in self.config.formats)
        net, weights = exported_weights(trainer, model, self.weights)
        source = weights.get("path") or f"{type(pl_module).__qualname__} after {trainer.global_step} steps"
        self.manifest = export_formats(
            net, out_dir, self.config, signature=signature_of(model),
            calibration=validation_batches(trainer) if needs_data else None, source=source,
            source_sha256=weights["sha256"] if weights["which"] == "best" else None,
            about={"weights": weights, "data": validation_source(trainer) if needs_data else None},
        )
        for entry in self.manifest["artifacts"]:
            check = entry.get("agreement") or {}
            quality = (f"top-1 agreement {check['top1_agreement']:.2f}%" if check.get("top1_agreement") is not None
                       else f"max |diff| vs eager {entry['max_abs_err']:.2e}")
            rank_zero_info(f"[export] {entry['format']:<18} {entry['bytes'] / 1e6:8.2f} MB  {quality}  -> "
                           f"{out_dir / entry['files'][0]['path']}")


def model_on_rank_zero(trainer: L.Trainer, pl_module: L.LightningModule) -> nn.Module | None:
    """The module to export on global rank 0, None on the other ranks.

    FSDP2-sharded parameters are gathered first, by every rank (a collective), into a plain copy
    rebuilt from the module's hyperparameters.
    """
    if is_sharded(pl_module):
        return gather_unsharded(pl_module, lambda: _rebuild(pl_module))
    return pl_module if trainer.is_global_zero else None


def _rebuild(pl_module: L.LightningModule) -> L.LightningModule:
    try:
        return type(pl_module)(**pl_module.hparams)
    except TypeError as err:
        raise SetupError(
            f"Cannot rebuild an unsharded {type(pl_module).__name__} to export its gathered weights ({err}). "
            "Call self.save_hyperparameters() in its __init__ so it can be rebuilt from them."
        ) from err


def run_dir(trainer: L.Trainer) -> Path:
    """The run's folder: the first logger's ``log_dir`` (``runs/<name>/version_N``), else
    ``default_root_dir``. Not ``Trainer.log_dir``: it broadcasts, which hangs when rank 0 alone asks."""
    return logger_run_dir(trainer.loggers, trainer.default_root_dir)


def validation_source(trainer: L.Trainer) -> dict[str, Any] | None:
    """What ``validation_batches`` reads, for a manifest: the DataModule's validation files."""
    from nl_lightning.data.datamodule import describe_data

    datamodule = getattr(trainer, "datamodule", None)
    return describe_data(datamodule, "val") if datamodule is not None else None


def validation_batches(trainer: L.Trainer) -> Any | None:
    """A fresh validation DataLoader from the DataModule, else the trainer's own (None if neither)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and hasattr(datamodule, "val_dataloader"):
        return datamodule.val_dataloader()
    loaders = trainer.val_dataloaders
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    return loaders


def _as_config(config: ExportConfig | dict | None) -> ExportConfig:
    if config is None:
        return ExportConfig()
    return ExportConfig(**config) if isinstance(config, dict) else config
