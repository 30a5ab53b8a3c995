"""``RunLock``: refuse to train into a run folder that a live run is writing.

Versioned run folders (``runs/<name>/version_<N>``) keep runs apart, but two fits started at the
same moment can pick the same version, and an explicit ``ModelCheckpoint(dirpath=...)`` or
logger ``version`` can point two runs at one folder: their ``best-*.ckpt`` / ``last.ckpt`` would
then mix. At fit start, rank 0 creates ``.nl_lightning.lock`` (pid, host) atomically in the log
folder and in every checkpoint folder; a lock held by a live process is an error, a stale one
(its process is gone: killed, crashed) is taken over with a warning. ``nl-lightning fit`` adds
this callback to every run; ``PredictionWriter`` takes the same lock on its output folder.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning._lock import LOCK_NAME, RunDirInUseError, acquire, release  # noqa: F401 (re-exported)
from nl_lightning.track.loggers import run_dir


class RunLock(L.Callback):
    """Lock the run's log folder and checkpoint folders for the duration of ``fit`` (rank 0)."""

    def __init__(self) -> None:
        self._held: list[Path] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        folders = {Path(cb.dirpath).resolve() for cb in trainer.checkpoint_callbacks
                   if isinstance(cb, ModelCheckpoint) and cb.dirpath}
        if trainer.loggers:  # not trainer.log_dir: it broadcasts, and only rank 0 is here (a DDP hang)
            folders.add(run_dir(trainer.loggers, trainer.default_root_dir).resolve())
        for folder in sorted(folders):
            self._held.append(acquire(folder))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        while self._held:
            release(self._held.pop())

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")
