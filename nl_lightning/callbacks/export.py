"""``ExportCallback``: at fit end, write the trained model in the chosen formats plus a manifest.

A thin hook over ``nl_lightning.export.export_formats``: the formats, parity tolerances and
calibration size come from an ``ExportConfig``; static INT8 is calibrated on the validation
DataLoader. Runs on rank 0 only; writes are atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from nl_lightning.export.bundle import ExportConfig, export_formats


class ExportCallback(L.Callback):
    """Export ``pl_module.model`` (or the module) at the end of ``fit``."""

    def __init__(self, dirpath: str | None = None, config: ExportConfig | None = None) -> None:
        """
        Args:
            dirpath: output folder (default ``<default_root_dir>/export``).
            config: formats and checks (default: ONNX, ORT-optimized ONNX, ORT dynamic INT8).
        """
        self.dirpath = dirpath
        self.config = _as_config(config)
        self.manifest: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if "tensorrt" in self.config.formats:
            from nl_lightning.export.tensorrt import check_tensorrt

            check_tensorrt()  # before training, not after it

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out_dir = Path(self.dirpath or Path(trainer.default_root_dir) / "export")
        needs_data = "onnx_int8_static" in self.config.formats
        self.manifest = export_formats(
            pl_module, out_dir, self.config, calibration=validation_batches(trainer) if needs_data else None,
            source=f"{type(pl_module).__qualname__} after {trainer.global_step} steps",
        )
        for entry in self.manifest["artifacts"]:
            rank_zero_info(
                f"[export] {entry['format']:<18} {entry['bytes'] / 1e6:8.2f} MB  max |diff| vs eager "
                f"{entry['max_abs_err']:.2e}  -> {out_dir / entry['files'][0]['path']}"
            )


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
