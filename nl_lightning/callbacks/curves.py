"""``CurvesCallback``: ``curves.png`` in the run folder at the end of ``fit``.

Training loss, each validation metric and the learning rate against the step, read back from what
the loggers wrote in the run folder (TensorBoard events or ``metrics.csv``: the first logger must be
one of these two, as in every shipped config). ``nl-lightning plot RUN_DIR...`` redraws it later.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from nl_lightning.errors import ConfigError
from nl_lightning.track.curves import plot_curves, read_scalars
from nl_lightning.track.loggers import flush, run_dir


class CurvesCallback(L.Callback):
    """Draw the run's curves into ``<run folder>/<filename>`` when ``fit`` ends (rank 0)."""

    def __init__(self, filename: str = "curves.png") -> None:
        """
        Args:
            filename: the PNG's name inside the run folder.
        """
        if not filename.endswith(".png"):
            raise ConfigError(f"CurvesCallback(filename={filename!r}) must end in .png.")
        self.filename = filename
        self.path: Path | None = None

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            flush(logger)
        folder = run_dir(trainer.loggers, trainer.default_root_dir)
        try:
            scalars = read_scalars(folder)
            self.path = plot_curves({folder.parent.name or folder.name: scalars}, folder / self.filename)
        except (FileNotFoundError, ValueError) as err:  # no event files, or nothing logged yet (a 2-step run)
            rank_zero_warn(f"CurvesCallback wrote no {self.filename}: {err}")
