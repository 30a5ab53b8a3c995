"""``AtomicCheckpointIO``: Lightning checkpoints written beside their target and moved into place.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lives in
the system temp folder: a checkpoint bigger than ``/tmp`` fails, a temp folder on another filesystem
turns the final move into a copy (a kill mid-copy leaves a truncated ``last.ckpt``), and a killed
save leaves its temp file behind. Here each save goes to a hidden, locked folder beside the target
(``_io.py``), is flushed to disk and renamed over the target in one step, so a reader sees
the previous checkpoint or the new one, never part of one; the next save removes what a killed one
left. ``nl-lightning fit`` installs it; in Python pass ``Trainer(plugins=[AtomicCheckpointIO()])``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from nl_lightning._io import save_torch
from nl_lightning.errors import WrongTypeError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic; remote URLs (``s3://``...) keep Lightning's path."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise WrongTypeError(
                "AtomicCheckpointIO.save_checkpoint takes no storage_options; remove them from the "
                f"Trainer/Strategy call (got {storage_options!r})."
            )
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path)
        save_torch(checkpoint, Path(str(path).removeprefix("file://")))


def install(trainer: Any) -> bool:
    """Give ``trainer``'s strategy an ``AtomicCheckpointIO`` when it uses Lightning's default one
    (a user's own plugin is kept). Returns whether it was installed."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True

