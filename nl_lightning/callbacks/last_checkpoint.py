"""``LastCheckpoint``: ``last.ckpt`` holds the state at the end of the run, as its name says.

Lightning's ``ModelCheckpoint(save_last=True, monitor=...)`` writes ``last.ckpt`` only when it
also writes a top-k checkpoint, so a run whose metric stopped improving, which validates every
few epochs, or which stops mid-epoch (``max_steps``) ends with a ``last.ckpt`` from an earlier
step. ``--ckpt_path last`` then resumes from there and silently repeats the steps since. At the
end of ``fit`` this callback saves ``last.ckpt`` again (through ``Trainer.save_checkpoint``, so the
strategy's and ``AtomicCheckpointIO``'s writing apply) for every such callback whose file is
behind. ``nl-lightning fit`` adds it to every run.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["LastCheckpoint"]


class LastCheckpoint(L.Callback):
    """At the end of ``fit``, bring every ``ModelCheckpoint(save_last=True)``'s last checkpoint up to
    the final step."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or not callback.save_last or callback.dirpath is None:
                continue
            path = callback.last_model_path or callback.format_checkpoint_name(
                {"epoch": torch.tensor(trainer.current_epoch), "step": torch.tensor(trainer.global_step)},
                callback.CHECKPOINT_NAME_LAST)
            behind = _saved_step(Path(path)) != trainer.global_step if trainer.is_global_zero else None
            if trainer.strategy.broadcast(behind):  # every rank takes part in saving, or none
                callback.last_model_path = str(path)  # before saving: it is part of the callback's state
                trainer.save_checkpoint(path)


def _saved_step(path: Path) -> int | None:
    """The ``global_step`` a checkpoint file records (memory-mapped: its tensors are not read)."""
    if not path.is_file():
        return None  # missing, or a sharded folder: save it again
    try:
        return torch.load(path, mmap=True, weights_only=True, map_location="cpu").get("global_step")
    except Exception:  # unreadable (cut short): write a good one
        return None
