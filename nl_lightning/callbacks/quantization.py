"""``QuantizationCallback``: at fit end, write quantized artifacts and compare them with fp32.

A thin hook over ``VariantBuilder`` / ``compare_variants``: for each method of a
``QuantizationConfig`` (ORT INT8 dynamic / static, torchao INT8, FP16 / BF16) it writes the
artifact, then logs its size ratio, its top-1 agreement with fp32 and the change in validation
accuracy and loss (``quantization/<method>/...``). Latency is left to ``nl-lightning profile`` and
``benchmarks/compression.py``, which time repeated, interleaved runs. Runs after
``PruningCallback`` has made pruning permanent (``on_train_end`` precedes ``on_fit_end``), so
prune -> fine-tune -> quantize is one ``fit``; under FSDP2 the weights are gathered first.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from nl_lightning.callbacks.best_weights import ExportWeights, exported_weights
from nl_lightning.callbacks.export import model_on_rank_zero, run_dir, validation_batches, validation_source
from nl_lightning.compress.quantize import QuantizationConfig
from nl_lightning._imports import ONNX_AVAILABLE, ORT_AVAILABLE, TORCHAO_AVAILABLE, require
from nl_lightning._io import write_json
from nl_lightning.errors import SetupError
from nl_lightning.export.compare import compare_variants
from nl_lightning.export.signature import signature_of
from nl_lightning.export.variants import VariantBuilder

REPORT_NAME = "quantization.json"
LOGGED = ("size_ratio", "agreement", "accuracy_delta", "loss_delta")


class QuantizationCallback(L.Callback):
    """Quantize ``pl_module.model`` (or the module) at the end of ``fit``."""

    def __init__(self, dirpath: str | None = None, config: QuantizationConfig | None = None,
                 weights: ExportWeights = "best") -> None:
        """
        Args:
            dirpath: output folder (default: ``quantized/`` in the run's folder, the first logger's
                ``log_dir``; ``<default_root_dir>/quantized`` without a logger).
            config: methods and how much validation data to use (default: ORT dynamic INT8).
            weights: ``best``: the checkpoint a ``ModelCheckpoint(monitor=...)`` kept as best (the final
                weights when none monitors a metric); ``last``: the weights at the end of fit.
        """
        self.dirpath, self.weights = dirpath, weights
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
        loader = validation_batches(trainer)
        if loader is None:
            raise SetupError(
                "QuantizationCallback measures the quantized model on validation data, but this fit has no "
                "val_dataloader. Give the DataModule a val_dataloader (or remove the callback)."
            )
        model = model_on_rank_zero(trainer, pl_module)
        if model is None:
            return
        out_dir = Path(self.dirpath or run_dir(trainer) / "quantized")
        cfg = self.config
        net, weights = exported_weights(trainer, model, self.weights)
        builder = VariantBuilder(net, out_dir, signature=signature_of(model), calibration=loader,
                                 calibration_batches=cfg.calibration_batches)
        self.results = compare_variants(builder, cfg.methods, loader, cfg.eval_batches)
        write_json(out_dir / REPORT_NAME, {"config": asdict(cfg), "weights": weights,
                                           "data": validation_source(trainer), "results": self.results})
        metrics = self.metrics()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        for row in self.results[1:]:
            rank_zero_info(
                f"[quantization] {row['variant']}: {row['size_ratio']:.2f}x smaller, top-1 agreement with fp32 "
                f"{row['agreement']:.2f}%, accuracy {row['accuracy_delta']:+.2f} points on {row['samples']} "
                f"predictions -> {row['path']}"
            )

    def metrics(self) -> dict[str, float]:
        """``quantization/<method>/<size_ratio|agreement|accuracy_delta|loss_delta>``."""
        return {f"quantization/{row['variant']}/{key}": float(row[key])
                for row in self.results[1:] for key in LOGGED if row.get(key) is not None}
