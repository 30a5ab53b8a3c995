"""``QuantizationCallback``: at fit end, write quantized artifacts and measure them against fp32.

A thin hook over ``VariantBuilder`` / ``compare_variants``: for each method of a
``QuantizationConfig`` (ORT INT8 dynamic / static, torchao INT8, FP16 / BF16) it writes the
artifact, then logs its size ratio, latency ratios and the change in validation accuracy and loss
(``quantization/<method>/...``). Runs after ``PruningCallback`` has made pruning permanent
(``on_train_end`` precedes ``on_fit_end``), so prune -> fine-tune -> quantize is one ``fit``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from nl_lightning.callbacks.export import validation_batches
from nl_lightning.compress.quantize import QuantizationConfig
from nl_lightning._imports import ONNX_AVAILABLE, ORT_AVAILABLE, TORCHAO_AVAILABLE, require
from nl_lightning.export.atomic import write_json
from nl_lightning.export.compare import compare_variants
from nl_lightning.export.inputs import batch_input
from nl_lightning.export.variants import VariantBuilder

REPORT_NAME = "quantization.json"


class QuantizationCallback(L.Callback):
    """Quantize ``pl_module.model`` (or the module) at the end of ``fit``."""

    def __init__(self, dirpath: str | None = None, config: QuantizationConfig | None = None) -> None:
        """
        Args:
            dirpath: output folder (default ``<default_root_dir>/quantized``).
            config: methods and measurement settings (default: ORT dynamic INT8).
        """
        self.dirpath = dirpath
        self.config = QuantizationConfig(**config) if isinstance(config, dict) else (config or QuantizationConfig())
        self.results: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        methods = self.config.methods
        what = f"QuantizationCallback(methods={methods})"
        if any(m.startswith("ort_") for m in methods):
            require(ONNX_AVAILABLE and ORT_AVAILABLE, "onnx / onnxruntime", "export", what)
        if any(m.startswith("torchao_") for m in methods):
            require(TORCHAO_AVAILABLE, "torchao", "export", what)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out_dir = Path(self.dirpath or Path(trainer.default_root_dir) / "quantized")
        loader = validation_batches(trainer)
        if loader is None:
            raise RuntimeError(
                "QuantizationCallback measures the quantized model on validation data, but this fit has no "
                "val_dataloader. Give the DataModule a val_dataloader (or remove the callback)."
            )
        cfg = self.config
        seq_len = batch_input(next(iter(loader))).size(1)
        builder = VariantBuilder(pl_module, out_dir, calibration=loader, calibration_batches=cfg.calibration_batches,
                                 threads=cfg.threads)
        self.results = compare_variants(builder, cfg.methods, loader, cfg.eval_batches, cfg.latency_batch_sizes,
                                        seq_len, cfg.warmup, cfg.iters)
        write_json(out_dir / REPORT_NAME, {"config": asdict(cfg), "results": self.results})
        metrics = self.metrics()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        for row in self.results[1:]:
            rank_zero_info(
                f"[quantization] {row['variant']}: {row['size_ratio']:.2f}x smaller, "
                f"{row[f'latency_ratio_b{cfg.latency_batch_sizes[0]}']:.2f}x faster at batch "
                f"{cfg.latency_batch_sizes[0]}, accuracy {row['accuracy_delta']:+.2f} points -> {row['path']}"
            )

    def metrics(self) -> dict[str, float]:
        """``quantization/<method>/<size_ratio|latency_ratio_b<B>|accuracy_delta|loss_delta>``."""
        out = {}
        for row in self.results[1:]:
            for key, value in row.items():
                if key == "size_ratio" or key.startswith("latency_ratio") or key.endswith("_delta"):
                    out[f"quantization/{row['variant']}/{key}"] = float(value)
        return out
