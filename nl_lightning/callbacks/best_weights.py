"""Which weights a fit-end export writes: the monitored best checkpoint by default, not the last step.

Lightning's ``ModelCheckpoint(monitor=...)`` keeps the best model on disk while training goes on;
at fit end the module holds the *final* weights, which early stopping's patience has usually
taken past the best. ``ExportCallback`` and ``QuantizationCallback`` therefore export the best
checkpoint (``weights="best"``), read with the safe loader into a copy of the network, and record
which weights they wrote in their manifest / report (path, SHA-256, monitor and score, or the
final weights with the reason). The final weights are used when no callback monitors a metric,
when the best is a sharded folder (FSDP2), or when it predates the end of pruning.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from nl_lightning._io import arrays_sha256, path_sha256
from nl_lightning.callbacks.pruning import PruningCallback
from nl_lightning.export.signature import network
from nl_lightning.models.checkpoint import read_checkpoint

__all__ = ["ExportWeights", "exported_weights"]

#: Which weights a fit-end export writes: the monitored ``best`` checkpoint, or the ``last`` (final) weights.
ExportWeights = Literal["best", "last"]


def exported_weights(trainer: L.Trainer, model: nn.Module, which: ExportWeights) -> tuple[nn.Module, dict[str, Any]]:
    """The network to export (``model``'s own, or a copy holding the best checkpoint's weights) and
    the record of which weights those are."""
    final = {"which": "last", "global_step": trainer.global_step,
             "sha256": arrays_sha256(network(model).state_dict().items())}
    if which == "last":
        return network(model), final
    best = _monitored_best(trainer)
    if best is None:
        return network(model), {**final, "note": "no ModelCheckpoint monitors a metric, so the final weights"}
    path = Path(best.best_model_path)
    reason = _cannot_use(trainer, path)
    if reason:
        warnings.warn(f"Exporting the final weights, not the monitored best {path}: {reason}.", stacklevel=2)
        return network(model), {**final, "note": reason}
    checkpoint = read_checkpoint(path)
    net = copy.deepcopy(network(model))
    prefix = "" if network(model) is model else "model."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    net.load_state_dict(state, strict=True)  # PruningCallback's checkpoints hold permanent weights
    score = best.best_model_score
    return net, {"which": "best", "path": str(path), "sha256": path_sha256(path), "monitor": best.monitor,
                 "mode": best.mode, "score": None if score is None else float(score),
                 "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}


def _monitored_best(trainer: L.Trainer) -> ModelCheckpoint | None:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
            return callback
    return None


def _cannot_use(trainer: L.Trainer, path: Path) -> str | None:
    if path.is_dir():
        return "it is a sharded (FSDP2) checkpoint folder, and the gathered final weights are what is in memory"
    if not path.is_file():
        return "the file is gone"
    for callback in trainer.callbacks:  # the best must come after the last pruning step
        if isinstance(callback, PruningCallback):
            last = callback.start_epoch if callback.end_epoch is None else callback.end_epoch
            epoch = read_checkpoint(path).get("epoch", -1)
            if epoch <= last:
                return f"it was saved in epoch {epoch}, before pruning ended (epoch {last})"
    return None
