"""``TaskModule``: what every nl_lightning LightningModule shares — optimizers, schedules,
FSDP2 sharding under ``ModelParallelStrategy``, optional ``torch.compile``, LoRA, safe checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.utilities import rank_zero_info

from nl_lightning.errors import WrongTypeError
from nl_lightning.models.checkpoint import load_checkpoint
from nl_lightning.models.lora import LoRAConfig, apply_lora, as_lora_config, lora_parameter_counts
from nl_lightning.models.lora import merge_lora as merge_adapters
from nl_lightning.models.lora_checkpoint import adapter_keys, check_base, complete_state
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
    _given_example: Any = None  # what the example_input_array setter was given (Lightning's attribute is its own)
    lora_config: LoRAConfig | None = None
    lora_trainable: tuple[str, ...] = ()
    """Submodules of ``self.model`` that train in full beside LoRA adapters (a classifier's new head)."""
    lora_base: dict[str, str] | None = None
    """``base_record(folder)`` of the frozen base; when set, checkpoints hold the adapters only."""

    def __init__(
        self, optimizer: OptimizerConfig | None = None, scheduler: SchedulerConfig | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.optimizer_config = _as(OptimizerConfig, optimizer)
        self.scheduler_config = _as(SchedulerConfig, scheduler)
        self.compile_model = compile

    def _setup_lora(self, lora: LoRAConfig | dict[str, Any] | None) -> None:
        """Call right after building ``self.model`` (and ``pretrained_source``): adapters on the targets,
        all else frozen but ``lora_trainable`` (``models/lora.py``); on a pretrained base, checkpoints
        then hold the adapters only."""
        self.lora_config = as_lora_config(lora)
        if self.lora_config is not None:
            apply_lora(self.model, self.lora_config, self.lora_trainable)
            self.hparams["lora"] = self.lora_config.to_dict()  # resolved, like the config
        source = getattr(self, "pretrained_source", None)
        if self.lora_config is not None and source is not None:
            # Adapters only in checkpoints: the frozen base stays in its folder, recorded with its hash,
            # and the hyperparameters keep the folder so a checkpoint rebuilds the base from it.
            self.lora_base = source.record()
            self.hparams["pretrained"] = source.path

    def merge_lora(self) -> "TaskModule":
        """Fold the LoRA adapters into the weights (same outputs): an ordinary model for export, serving
        and ``save_pretrained``, whose hyperparameters say ``lora=None``. A no-op without LoRA."""
        if self.lora_config is not None:
            merge_adapters(self.model)
            self.lora_config = self.lora_base = None
            self.hparams["lora"] = None
            if "pretrained" in self.hparams:  # the merged weights stand alone: no folder needed
                self.hparams["pretrained"] = None
        return self

    @property
    def example_input_array(self) -> Any:
        """A batch of one input (the model's longest length, at most 256) on the module's device, so
        Lightning's model summary reports real FLOPs and input / output sizes (not ``0``) and
        ``TensorBoardLogger(log_graph=True)`` draws the model graph. None where a forward on rank 0
        alone could hang (FSDP2-sharded weights) or trigger a compile for an unused shape."""
        if self._given_example is not None:
            return self._given_example
        if self.device_mesh is not None or self.compile_model:
            return None
        from nl_lightning.errors import WrongTypeError
        from nl_lightning.export.signature import signature_of

        try:
            signature = signature_of(self.model)
        except WrongTypeError:  # a subclass network without a TransformerConfig
            return None
        length = min(signature.max_seq_len or self.model.config.max_seq_len, 256)
        return signature.example(1, length).to(self.device)

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self._given_example = example

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
        mesh = self.device_mesh
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
        if self.lora_config is not None:
            trainable, total = lora_parameter_counts(self)
            rank_zero_info(f"LoRA: {trainable:,} of {total:,} parameters train ({trainable / total:.2%}); "
                           f"targets {self.lora_config.targets}, r={self.lora_config.r}.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep checkpoints loadable with ``torch.load(weights_only=True)``: plain dicts only."""
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None:
            checkpoint["hyper_parameters"] = {k: _plain(v) for k, v in dict(hparams).items()}
        checkpoint["nl_lightning"] = {"class_path": f"{type(self).__module__}.{type(self).__qualname__}"}
        if self.lora_base is not None:  # adapters only: the frozen base is in its folder already
            keep = adapter_keys(self)
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
            checkpoint["nl_lightning"]["lora_base"] = dict(self.lora_base)
        source = getattr(self, "pretrained_source", None)
        if source is not None:  # the folder this model started from, and its hash
            checkpoint["nl_lightning"]["pretrained"] = source.record()
        if self.structured_pruning:
            checkpoint["nl_lightning"]["structured_pruning"] = dict(self.structured_pruning)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Before Lightning loads the weights: a structurally pruned model's checkpoint shrinks
        ``self.model`` to its widths; an adapter-only (LoRA) checkpoint is checked against this model's
        base and completed with the base weights this model was built with."""
        record = (checkpoint.get("nl_lightning") or {}).get("structured_pruning")
        config = (checkpoint.get("hyper_parameters") or {}).get("config")
        if record and isinstance(config, dict) and hasattr(self, "config"):
            from nl_lightning.compress.structured import match_widths
            from nl_lightning.models.config import TransformerConfig

            match_widths(self.model, TransformerConfig.from_dict(config))
            self.record_structure(record["original"])
        stored = (checkpoint.get("nl_lightning") or {}).get("lora_base")
        if stored is not None:
            check_base(stored, self.lora_base)
            checkpoint["state_dict"] = complete_state(self, checkpoint["state_dict"])

    def record_structure(self, original: dict[str, Any]) -> None:
        """After structured pruning of ``self.model``: its config becomes this module's (and the
        checkpoint's), and the widths before pruning are kept beside it."""
        self.config = self.model.config
        self.hparams["config"] = self.config.to_dict()
        self.structured_pruning = {"original": dict(original)}

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> "TaskModule":
        """Build from a Hugging Face or LitGPT model folder: its architecture and weights.

        Keyword arguments that are ``TransformerConfig`` fields override the folder's config (only
        training-time ones: dropout, attn_dropout, drop_path, attn_backend, max_seq_len with RoPE); the
        others go to ``__init__`` (``num_classes``, ``task``, ``pooling``, ``optimizer``...).
        """
        from nl_lightning.pretrained import pretrained_init_args

        return cls(**pretrained_init_args(cls, path, kwargs))

    def save_pretrained(self, path: str | Path, extra_files: dict[str, str | bytes | Path] | None = None) -> Path:
        """Write the network as a Hugging Face folder (config.json + model.safetensors, atomically) that
        transformers loads as the same model; ``extra_files`` (name -> text, bytes or a file to copy,
        e.g. a tokenizer.json) go into the folder too."""
        from nl_lightning.pretrained import save_pretrained

        return save_pretrained(self.model, path, task=getattr(self, "task", "classification"), extra_files=extra_files)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "TaskModule":
        """Rebuild the model from a checkpoint alone (safe load; see ``load_checkpoint``)."""
        return load_checkpoint(path, expected=cls, map_location=map_location)


def _as(cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    if isinstance(value, cls):
        return value
    raise WrongTypeError(f"Expected {cls.__name__} or a dict, got {type(value).__name__}.")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
