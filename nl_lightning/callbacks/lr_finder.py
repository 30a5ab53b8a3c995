"""``LRFinder``: Lightning's ``LearningRateFinder`` for nl_lightning modules.

Lightning's callback runs the range test at fit start and sets an ``lr`` / ``learning_rate``
attribute. nl_lightning modules read their rate from ``optimizer_config.lr`` and build a schedule
around it, so this subclass sets the rate there (``set_learning_rate``) and rebuilds the optimizer
and schedule from it, then logs ``lr_find/suggested_lr`` and saves the curve (``lr_find.png``) and
the numbers (``lr_find.json``) in the logger's folder.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from nl_lightning.tune.lr_find import check_range, save_outputs, set_learning_rate, suggested_lr


class LRFinder(LearningRateFinder):
    """Find a learning rate before training and train with it.

    Args:
        min_lr, max_lr: the range tested (exponentially spaced by default).
        num_training_steps: steps of the test (restored afterwards: training starts from the same weights).
        mode: 'exponential' or 'linear' spacing.
        early_stop_threshold: stop the test once the loss exceeds this multiple of the best loss (None: never).
        update_attr: train with the suggested rate (False: only report it).
        save_plot: write lr_find.png and lr_find.json into the first logger's folder.
    """

    def __init__(
        self, min_lr: float = 1e-6, max_lr: float = 1.0, num_training_steps: int = 100,
        mode: Literal["exponential", "linear"] = "exponential", early_stop_threshold: float | None = 4.0,
        update_attr: bool = True, save_plot: bool = True,
    ) -> None:
        check_range(min_lr, max_lr, num_training_steps, "LRFinder", "num_training_steps")
        # Lightning's own update looks for an `lr` attribute; ours is done in lr_find below.
        super().__init__(min_lr, max_lr, num_training_steps, mode, early_stop_threshold, update_attr=False)
        self.apply, self.save_plot = update_attr, save_plot
        self.suggested_lr: float | None = None

    def lr_find(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().lr_find(trainer, pl_module)
        lr = suggested_lr(self.optimal_lr)
        if lr is None:
            rank_zero_warn(
                "LRFinder could not suggest a learning rate (too few points before the loss diverged); training "
                "keeps the configured rate. Raise num_training_steps or widen [min_lr, max_lr]."
            )
            return
        self.suggested_lr = lr
        if self.apply:
            set_learning_rate(pl_module, self.suggested_lr)
            trainer.strategy.setup_optimizers(trainer)  # optimizer and schedule rebuilt around the new rate
        self._report(trainer)

    @rank_zero_only
    def _report(self, trainer: L.Trainer) -> None:
        rank_zero_info(f"LRFinder: suggested learning rate {self.suggested_lr:.3g}"
                       + (" (training with it)" if self.apply else ""))
        for logger in trainer.loggers:
            logger.log_metrics({"lr_find/suggested_lr": self.suggested_lr}, step=trainer.global_step)
        if self.save_plot and trainer.log_dir is not None:
            save_outputs(self.optimal_lr, self.suggested_lr, trainer.log_dir)
