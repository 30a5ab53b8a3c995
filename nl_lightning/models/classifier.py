"""``TransformerClassifier``: sequence classification (cross-entropy; accuracy, F1...) or regression (MSE)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MetricCollection

from nl_lightning.errors import ConfigError, DataError
from nl_lightning.export.signature import task_prediction
from nl_lightning.models.base import TaskModule
from nl_lightning.models.config import TransformerConfig, as_config
from nl_lightning.models.lora import LoRAConfig
from nl_lightning.models.metrics import CLASSIFICATION_DEFAULT, REGRESSION_DEFAULT, MetricSpec, build_metrics
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
        metrics: list[str | MetricSpec] | None = None,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
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
            metrics: logged as ``<stage>/<name>`` (see ``nl_lightning.models.metrics``); default
                ``[acc, balanced_acc, macro_f1]`` (classification) or ``[mse, mae]`` (regression).
                ``acc`` is plain accuracy (micro); ``balanced_acc`` the mean per-class recall.
            label_smoothing: cross-entropy target smoothing in [0, 1) (classification only).
            class_weights: one loss weight per class (classification only), e.g. for imbalance.
        """
        super().__init__(optimizer, scheduler, compile)
        if task not in ("classification", "regression"):
            raise ConfigError(f"task={task!r} is not supported; choose 'classification' or 'regression'.")
        if num_classes < (2 if task == "classification" else 1):
            raise ConfigError(f"num_classes={num_classes} is too small for {task}; classification needs >= 2.")
        _check_loss_args(task, num_classes, label_smoothing, class_weights)
        self.save_hyperparameters()
        self._plain_hparams()
        self.task, self.num_classes, self.label_smoothing = task, num_classes, float(label_smoothing)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)  # from hparams, not the state dict
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
        if metrics is None:
            metrics = list(CLASSIFICATION_DEFAULT if task == "classification" else REGRESSION_DEFAULT)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection(build_metrics(metrics, task, num_classes), prefix=f"{stage}/"))

    def setup(self, stage: str) -> None:
        """Take over input normalization from a DataModule with ``normalize=True``: from now on it
        yields raw features and the statistics live in this model (its checkpoint, its export)."""
        datamodule = _datamodule(self)
        if getattr(datamodule, "normalize", False) and hasattr(datamodule, "feature_statistics"):
            datamodule.model_normalizes = True
        if stage == "fit":
            _warn_if_order_blind(self.config)  # when training, not when a trained model is loaded
        if self.task == "classification" and stage in ("fit", "validate", "test") and hasattr(datamodule, "label_range"):
            self._check_labels(datamodule.label_range())

    def _check_labels(self, label_range: tuple[int, int, str] | None) -> None:
        """Before the first step (and the model summary): the data's class ids fit ``num_classes``."""
        if label_range is None:
            return
        low, high, source = label_range
        if low < 0 or high >= self.num_classes:
            raise ConfigError(
                f"The data's labels ({source}) range over {low}..{high}, but the model has num_classes={self.num_classes} "
                f"(class ids 0..{self.num_classes - 1}). Set --model.init_args.num_classes={high + 1}"
                + (" and map the labels to 0..K-1." if low < 0 else ".")
            )

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

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.model(x, key_padding_mask)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return F.cross_entropy(out.float(), y, weight=self.class_weights, label_smoothing=self.label_smoothing)
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


def _check_loss_args(task: str, num_classes: int, label_smoothing: float, class_weights: list[float] | None) -> None:
    if task == "regression" and (label_smoothing or class_weights is not None):
        raise ConfigError("label_smoothing and class_weights apply to task='classification' only; remove them "
                          "for regression.")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1) (0.1 is common; 0 = none).")
    if class_weights is not None:
        if len(class_weights) != num_classes or any(not w >= 0 for w in class_weights) or not any(class_weights):
            raise ConfigError(
                f"class_weights={list(class_weights)} must hold num_classes={num_classes} weights >= 0 (not all 0), "
                "one per class in class-id order."
            )


def _warn_if_order_blind(config: TransformerConfig) -> None:
    """Without positions a bidirectional encoder sees its tokens as a set: any pooling is order-blind."""
    if config.position == "none" and not config.causal:
        rank_zero_warn(
            "TransformerClassifier has position='none' and a bidirectional encoder: it cannot tell its tokens "
            "apart by position (rows of a sequence, columns of a table), so reordering them gives the same output. "
            "Set config.position: learned (or rope / alibi) unless the tokens really are an unordered set.",
            category=UserWarning,
        )


def _datamodule(module: TaskModule) -> object | None:
    trainer = module._trainer
    return getattr(trainer, "datamodule", None) if trainer is not None else None
