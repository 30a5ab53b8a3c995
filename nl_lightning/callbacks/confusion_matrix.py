"""``ConfusionMatrixMonitor``: a classifier's confusion matrix every validation epoch.

torchmetrics' ``MulticlassConfusionMatrix`` accumulates over the epoch (synchronized across DDP
ranks at ``compute``); its own ``.plot`` draws the picture, sent to every logger that takes images
(TensorBoard, W&B, MLflow; a PNG in the run folder for CSV). Per-class precision and recall are
logged as ``val/precision/<class>`` and ``val/recall/<class>``, and the latest matrix is kept as
``confusion_matrix.json`` in the run folder. Predictions are read from the module's own forward
during validation (a forward hook), so nothing is computed twice.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix

from nl_lightning._compat import logged_step
from nl_lightning._io import write_json
from nl_lightning.errors import ConfigError
from nl_lightning.track.confusion import confusion_figure, score_metrics
from nl_lightning.track.loggers import log_figure, run_dir


class ConfusionMatrixMonitor(L.Callback):
    """Confusion matrix, per-class precision and recall of a classifier after each validation epoch."""

    def __init__(self, num_classes: int | None = None, labels: list[str] | None = None,
                 image: bool = True, prefix: str = "val/") -> None:
        """
        Args:
            num_classes: classes (None: the module's ``num_classes``).
            labels: class names for the picture and the metric names (default ``0..C-1``).
            image: send the picture to the loggers (the scalars are always logged).
            prefix: namespace of the metrics and the picture's tag.
        """
        if num_classes is not None and num_classes < 2:
            raise ConfigError(f"ConfusionMatrixMonitor(num_classes={num_classes}) needs at least 2 classes.")
        if labels is not None and num_classes is not None and len(labels) != num_classes:
            raise ConfigError(f"ConfusionMatrixMonitor: {len(labels)} labels for num_classes={num_classes}.")
        self.num_classes, self.labels, self.image, self.prefix = num_classes, labels, image, prefix
        self.matrix: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._hook: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        n = self.num_classes or getattr(pl_module, "num_classes", None)
        if getattr(pl_module, "task", "classification") != "classification" or not n:
            raise ConfigError(
                f"ConfusionMatrixMonitor needs a classifier: {type(pl_module).__name__} has task="
                f"{getattr(pl_module, 'task', None)!r}, num_classes={n!r}. Remove the callback or pass num_classes."
            )
        if self.labels is not None and len(self.labels) != n:
            raise ConfigError(f"ConfusionMatrixMonitor: {len(self.labels)} labels for {n} classes.")
        self.metric = MulticlassConfusionMatrix(int(n)).to(pl_module.device)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric.reset()
        self._hook = pl_module.register_forward_hook(self._capture)

    def _capture(self, module: Any, args: Any, output: Any) -> None:
        # Under DDP, Lightning routes validation_step itself through the module's call (returning
        # None) around the inner forward: keep the logits, not that outer result.
        if isinstance(output, torch.Tensor):
            self._output = output

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._output is None:
            return
        target = batch["y"] if isinstance(batch, dict) else batch[1]
        self.metric.update(self._output.detach().argmax(-1), target)
        self._output = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hook()
        if trainer.sanity_checking:
            return
        self.matrix = self.metric.compute().cpu()  # all ranks: torchmetrics all-gathers the counts here
        metrics = score_metrics(self.matrix, self.prefix, self.labels)
        pl_module.log_dict(metrics, on_step=False, on_epoch=True)  # equal on every rank
        self._publish(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hook()

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    @rank_zero_only
    def _publish(self, trainer: L.Trainer) -> None:
        step = logged_step(trainer)  # the step Lightning logs val/* at
        path = run_dir(trainer.loggers, trainer.default_root_dir) / "confusion_matrix.json"
        write_json(path, {"step": step, "labels": self.labels, "matrix": self.matrix.tolist()})
        if not self.image or not trainer.loggers:
            return
        import matplotlib.pyplot as plt

        figure = confusion_figure(self.metric, self.matrix, self.labels)
        for logger in trainer.loggers:
            log_figure(logger, f"{self.prefix}confusion_matrix", figure, step)
        plt.close(figure)
