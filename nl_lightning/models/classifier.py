"""``TransformerClassifier``: sequence classification (accuracy, F1) or regression (MSE, MAE)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

from nl_lightning.errors import ConfigError, DataError
from nl_lightning.export.signature import task_prediction
from nl_lightning.models.base import TaskModule
from nl_lightning.models.config import TransformerConfig, as_config
from nl_lightning.models.lora import LoRAConfig
from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig
from nl_lightning.models.transformer import SequenceClassifier


class TransformerClassifier(TaskModule):
    """Encoder over token ids (B, T), feature sequences (B, T, F) or tabular rows (B, F).

    Batches are ``(x, y)`` or ``{"x": x, "y": y, "key_padding_mask": mask}`` (mask True = padding).
    """

    lora_trainable = ("head", "pool", "cls_token")  # new for the task: they start random, so they must train

    def __init__(
        self,
        config: TransformerConfig | None = None,
        num_classes: int = 2,
        task: Literal["classification", "regression"] = "classification",
        pooling: Literal["mean", "cls", "attention", "gem", "pooler"] = "mean",
        optimizer: OptimizerConfig | None = None,
        scheduler: SchedulerConfig | None = None,
        compile: bool = False,
        pretrained: str | None = None,
        lora: LoRAConfig | None = None,
    ) -> None:
        """
        Args:
            config: architecture (default: 'tiny' preset, bidirectional).
            num_classes: classes for classification; number of targets for regression.
            task: 'classification' (cross-entropy) or 'regression' (MSE).
            pooling: how the sequence becomes one vector ('pooler': BERT's, on the [CLS] token).
            pretrained: a BERT model folder whose encoder (and pooler / head, when they fit) to start
                from (docs/pretrained.md); ``config`` then stays unset, or differs only in training fields.
            lora: train low-rank adapters on these encoder projections; the encoder is frozen, the new
                head (with attention pooling and a [CLS] token, when used) trains in full.
        """
        super().__init__(optimizer, scheduler, compile)
        if task not in ("classification", "regression"):
            raise ConfigError(f"task={task!r} is not supported; choose 'classification' or 'regression'.")
        if num_classes < (2 if task == "classification" else 1):
            raise ConfigError(f"num_classes={num_classes} is too small for {task}; classification needs >= 2.")
        self.save_hyperparameters()
        self._plain_hparams()
        self.task, self.num_classes = task, num_classes
        self.pretrained_source = None
        if pretrained is not None:  # the checkpoint keeps the weights and records the folder (+ hash)
            from nl_lightning.pretrained.task import load_classifier

            self.config, self.model, self.pretrained_source = load_classifier(pretrained, config, num_classes, pooling, task)
            self.hparams["pretrained"] = None
        else:
            self.config = as_config(config, causal=False)
            self.model = SequenceClassifier(self.config, num_classes, pooling)
        self.hparams["config"] = self.config.to_dict()  # resolved: the checkpoint says what was built
        self._setup_lora(lora)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", self._metrics(f"{stage}/"))

    def setup(self, stage: str) -> None:
        """Take over input normalization from a DataModule with ``normalize=True``: from now on it
        yields raw features and the statistics live in this model (its checkpoint, its export)."""
        datamodule = _datamodule(self)
        if getattr(datamodule, "normalize", False) and hasattr(datamodule, "feature_statistics"):
            datamodule.model_normalizes = True

    def _fill_input_stats(self) -> None:
        """Statistics from the DataModule, unless the model has its own (restored from a checkpoint)."""
        datamodule = _datamodule(self)
        if getattr(datamodule, "model_normalizes", False) and not self.model.input_norm.fitted:
            self.model.input_norm.set_stats(*datamodule.feature_statistics())

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._fill_input_stats()  # after a checkpoint restore: its statistics win

    def on_validation_start(self) -> None:
        self._fill_input_stats()

    def on_test_start(self) -> None:
        self._fill_input_stats()

    def on_predict_start(self) -> None:
        self._fill_input_stats()

    def _metrics(self, prefix: str) -> MetricCollection:
        if self.task == "classification":
            metrics = {"acc": MulticlassAccuracy(self.num_classes), "f1": MulticlassF1Score(self.num_classes)}
        else:
            metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}
        return MetricCollection(metrics, prefix=prefix)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.model(x, key_padding_mask)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return F.cross_entropy(out.float(), y)
        return F.mse_loss(out.float(), y.float().view_as(out))

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, y, mask = self._unpack(batch)
        out = self(x, mask)
        loss = self.loss(out, y)
        metrics = getattr(self, f"{stage}_metrics")
        # forward, not update: training logs on_step, which Lightning reads from the forward cache.
        if self.task == "classification":
            metrics(out.float(), y)
        else:
            metrics(out.float().view(-1), y.float().reshape(-1))
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=stage != "train")
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities (B, C) for classification, predictions (B, K) for regression."""
        if isinstance(batch, dict):
            x, mask = batch["x"], batch.get("key_padding_mask")
        else:
            x, mask = (batch[0] if isinstance(batch, (tuple, list)) else batch), None
        return task_prediction(self(x, mask), self.task)

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        if isinstance(batch, dict):
            if "x" not in batch or "y" not in batch:
                raise DataError(f"TransformerClassifier needs batch keys 'x' and 'y', got {sorted(batch)}.")
            x, y, mask = batch["x"], batch["y"], batch.get("key_padding_mask")
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            (x, y), mask = batch, None
        else:
            raise DataError("TransformerClassifier expects batches (x, y) or {'x': ..., 'y': ...}.")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise DataError(f"Batch features contain NaN or Inf{self._where_non_finite(x, batch)}; clean the data or "
                            "use the data validation policy on_bad='drop'.")
        if self.task == "classification":
            if y.is_floating_point() or y.dim() != 1:
                raise DataError(f"Classification targets must be integer class ids of shape (batch,), got {tuple(y.shape)} {y.dtype}.")
            if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"Class ids must be in [0, {self.num_classes}); got min {int(y.min())}, max {int(y.max())}. Check num_classes.")
        return x, y, mask

    def _where_non_finite(self, x: Tensor, batch: Any) -> str:
        """`` at <file> dataset <key> row N (and k more)``, from the batch's ``row_id``, when it has one."""
        bad = (~torch.isfinite(x.flatten(1))).any(1).nonzero().flatten().cpu()
        row_ids = batch.get("row_id") if isinstance(batch, dict) else None
        if row_ids is None:
            return f" in batch position(s) {bad.tolist()[:5]}"
        rows = row_ids.cpu()[bad].tolist()
        datamodule = _datamodule(self)
        where = datamodule.locate_rows(rows[:1]) if hasattr(datamodule, "locate_rows") else [f"row {rows[0]}"]
        more = f" (and {len(rows) - 1} more in this batch)" if len(rows) > 1 else ""
        return f" at {where[0]}{more}"


def _datamodule(module: TaskModule) -> object | None:
    trainer = module._trainer
    return getattr(trainer, "datamodule", None) if trainer is not None else None
