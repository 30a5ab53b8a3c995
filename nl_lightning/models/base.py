"""``TaskModule``: what every nl_lightning LightningModule shares — optimizers, schedules,
FSDP2 sharding under ``ModelParallelStrategy``, optional ``torch.compile``, safe checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics

from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler


class TaskModule(L.LightningModule):
    """Subclasses set ``self.model`` (an ``nn.Module`` with ``transformer.blocks``) in ``__init__``
    and define ``_step(batch, stage) -> loss``, which logs under ``{stage}/``; the train, validation
    and test steps below call it."""

    model: torch.nn.Module
    structured_pruning: dict[str, Any] | None = None
    """``{"original": widths}`` once ``self.model`` was pruned structurally (see ``record_structure``);
    checkpoints carry it, so a resumed run rebuilds the pruned shapes before its weights load."""
    flops_per_batch: int | None = None
    """Training FLOPs of one batch, read by Lightning's ``ThroughputMonitor`` for FLOP/s and MFU; set
    from the first batch by ``nl_lightning.callbacks.TaskThroughputMonitor`` (see ``models/flops.py``)."""

    def __init__(
        self, optimizer: OptimizerConfig | None = None, scheduler: SchedulerConfig | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.optimizer_config = _as(OptimizerConfig, optimizer)
        self.scheduler_config = _as(SchedulerConfig, scheduler)
        self.compile_model = compile

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def _plain_hparams(self) -> None:
        """Call right after ``save_hyperparameters()``: configs become plain dicts, so loggers can
        write them to YAML and checkpoints load with ``torch.load(weights_only=True)``."""
        for key in list(self.hparams):
            self.hparams[key] = _plain(self.hparams[key])

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self, self.optimizer_config)
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 0
        if self.scheduler_config.name == "none":
            return optimizer
        scheduler = build_scheduler(optimizer, self.scheduler_config, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_model(self) -> None:
        """Shard each block, then the root, with FSDP2 when a device mesh is given
        (``ModelParallelStrategy``); compile in place when asked (state_dict keys unchanged)."""
        mesh = getattr(self, "_device_mesh", None)
        if mesh is not None and "data_parallel" in (mesh.mesh_dim_names or ()):
            from torch.distributed.fsdp import fully_shard

            dp_mesh = mesh["data_parallel"]
            for block in self.model.transformer.blocks:
                fully_shard(block, mesh=dp_mesh)
            fully_shard(self.model, mesh=dp_mesh)
        if self.compile_model and not getattr(self, "_compiled", False):
            self.model.compile()
            self._compiled = True

    def on_fit_start(self) -> None:
        """Reset metrics outside inference mode: states last reset by ``trainer.validate()`` are
        inference tensors, which fit's validation (run under ``no_grad``) cannot update in place."""
        for module in self.modules():
            if isinstance(module, torchmetrics.Metric):
                module.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep checkpoints loadable with ``torch.load(weights_only=True)``: plain dicts only."""
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None:
            checkpoint["hyper_parameters"] = {k: _plain(v) for k, v in dict(hparams).items()}
        checkpoint["nl_lightning"] = {"class_path": f"{type(self).__module__}.{type(self).__qualname__}"}
        if self.structured_pruning:
            checkpoint["nl_lightning"]["structured_pruning"] = dict(self.structured_pruning)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of a structurally pruned model: shrink ``self.model`` to the widths of the
        checkpoint's config first (Lightning loads the weights right after this hook)."""
        record = (checkpoint.get("nl_lightning") or {}).get("structured_pruning")
        config = (checkpoint.get("hyper_parameters") or {}).get("config")
        if record and isinstance(config, dict) and hasattr(self, "config"):
            from nl_lightning.compress.structured import match_widths
            from nl_lightning.models.config import TransformerConfig

            match_widths(self.model, TransformerConfig.from_dict(config))
            self.record_structure(record["original"])

    def record_structure(self, original: dict[str, Any]) -> None:
        """After structured pruning of ``self.model``: its config becomes this module's (and the
        checkpoint's), and the widths before pruning are kept beside it."""
        self.config = self.model.config
        self.hparams["config"] = self.config.to_dict()
        self.structured_pruning = {"original": dict(original)}

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "TaskModule":
        """Rebuild the model from a checkpoint alone (safe load; see ``load_checkpoint``)."""
        from nl_lightning.models.checkpoint import load_checkpoint

        return load_checkpoint(path, expected=cls, map_location=map_location)


def _as(cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    if isinstance(value, cls):
        return value
    raise TypeError(f"Expected {cls.__name__} or a dict, got {type(value).__name__}.")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
