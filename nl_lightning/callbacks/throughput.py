"""``TaskThroughputMonitor``: Lightning's ``ThroughputMonitor`` set up for nl_lightning batches.

It only supplies what Lightning's monitor asks its user for: ``batch_size_fn`` / ``length_fn`` for
``(x, y)`` and dict batches (so ``train/device/items_per_sec`` is tokens/s), the module's
``flops_per_batch`` (measured on the meta device from the first batch, ``models/flops.py``), and a
peak FLOP/s for MFU where Lightning has no table (CPUs: a measured matmul peak). Lightning logs
``train|validate/device/{batches,samples,items,flops}_per_sec`` and ``device/mfu`` once its window
of ``window_size`` batches is full, on rank 0.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from nl_lightning._compat import set_available_flops
from nl_lightning.errors import ConfigError
from nl_lightning.track.throughput import batch_size, batch_tokens, measure_peak_flops


class TaskThroughputMonitor(ThroughputMonitor):
    """Samples/s, tokens/s, FLOP/s and MFU of nl_lightning models, through Lightning's ``ThroughputMonitor``."""

    def __init__(self, window_size: int = 20, available_flops: float | Literal["auto"] | None = "auto",
                 measure_flops: bool = True) -> None:
        """
        Args:
            window_size: batches in the rolling average (Lightning logs rates once it is full).
            available_flops: peak FLOP/s of one device for MFU; ``auto``: Lightning's table (CUDA), a
                measured fp32 matmul peak elsewhere; None: no MFU.
            measure_flops: count ``flops_per_batch`` from the first batch when the module has none.
        """
        if window_size < 2:
            raise ConfigError(f"TaskThroughputMonitor(window_size={window_size}) must be >= 2 (rates need two points).")
        if isinstance(available_flops, str) and available_flops != "auto":
            raise ConfigError(f"TaskThroughputMonitor(available_flops={available_flops!r}): give a number, 'auto' or None.")
        super().__init__(batch_size_fn=batch_size, length_fn=batch_tokens, window_size=window_size)
        self.peak_flops, self.measure_flops = available_flops, measure_flops

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        peak = self.peak_flops
        if peak == "auto":
            peak = self.available_flops
            if peak is None and trainer.is_global_zero and trainer.strategy.root_device.type == "cpu":
                peak = measure_peak_flops(trainer.strategy.root_device)
        if peak != self.available_flops:
            set_available_flops(self, peak)

    @rank_zero_only
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if not self.measure_flops or getattr(pl_module, "flops_per_batch", None) is not None:
            return
        from nl_lightning.models.flops import batch_flops

        try:
            pl_module.flops_per_batch = batch_flops(pl_module, batch)
        except Exception as err:  # a module the meta device cannot run: rates still work, FLOPs do not
            rank_zero_warn(f"TaskThroughputMonitor could not count FLOPs of {type(pl_module).__name__} "
                           f"({type(err).__name__}: {err}); set pl_module.flops_per_batch to log FLOP/s and MFU.")
            self.measure_flops = False
