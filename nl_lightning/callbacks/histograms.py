"""``HistogramMonitor``: parameter and gradient histograms every N optimizer steps.

Through each logger's own API (``nl_lightning.track.loggers.log_histograms``): TensorBoard
``add_histogram``, W&B ``wandb.Histogram``; MLflow and CSV have no histograms and get summary
statistics (``<tag>/mean``, ``/std``, ``/min``, ``/max``, ``/norm``) as metrics instead. Tags are
``params/<name>`` and ``grads/<name>``. Taken before the optimizer step, so the gradient and the
weights it was computed for are logged together. Rank 0 only.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from nl_lightning.errors import ConfigError
from nl_lightning.track.loggers import log_histograms


class HistogramMonitor(L.Callback):
    """Log histograms of the weights and the gradients of ``pl_module`` every ``every_n_steps`` steps."""

    def __init__(self, every_n_steps: int = 100, params: bool = True, grads: bool = True) -> None:
        """
        Args:
            every_n_steps: optimizer steps between histograms (a histogram costs a pass over the weights).
            params: log the weights (``params/<name>``).
            grads: log the gradients (``grads/<name>``).
        """
        if every_n_steps < 1:
            raise ConfigError(f"HistogramMonitor(every_n_steps={every_n_steps}) must be >= 1.")
        if not (params or grads):
            raise ConfigError("HistogramMonitor(params=False, grads=False) would log nothing; enable one of them.")
        self.every_n_steps, self.params, self.grads = every_n_steps, params, grads

    @rank_zero_only
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if (trainer.global_step + 1) % self.every_n_steps or not trainer.loggers:
            return
        tensors = {}
        for name, p in pl_module.named_parameters():
            if self.params:
                tensors[f"params/{name}"] = p.detach()
            if self.grads and p.grad is not None:
                tensors[f"grads/{name}"] = p.grad.detach()
        for logger in trainer.loggers:
            log_histograms(logger, tensors, trainer.global_step)
