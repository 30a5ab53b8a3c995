"""``PruningCallback``: Lightning's ``ModelPruning`` with a sparsity schedule and nl_lightning defaults.

It configures ``ModelPruning`` rather than rewriting it: the parameters are the model's Linear
weights (``prunable_parameters``), ``amount`` is a function of the epoch that moves the measured
sparsity to the scheduled target, and masks are broadcast from rank 0 under DDP. Pruning runs at
the end of each scheduled training epoch; the epochs after it fine-tune the pruned network.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelPruning
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.nn.utils import prune as torch_prune

from nl_lightning.compress.prune import (
    DEFAULT_EXCLUDE,
    PruningMethod,
    PruningScope,
    prunable_parameters,
    refresh_pruned_weights,
    sync_masks,
    validate_pruning,
)
from nl_lightning.compress.schedule import (
    ScheduleCurve,
    is_pruning_epoch,
    step_amount,
    step_count,
    target_sparsity,
    validate_schedule,
)
from nl_lightning.compress.sparsity import layer_sparsity, sparsity, zero_count


class PruningCallback(ModelPruning):
    """Prune the Linear weights of ``pl_module.model`` to ``amount`` sparsity on a schedule."""

    def __init__(
        self,
        amount: float = 0.5,
        method: PruningMethod = "l1_unstructured",
        scope: PruningScope = "global",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        every_n_epochs: int = 1,
        curve: ScheduleCurve = "cubic",
        norm: float = 2,
        dim: int = 0,
        include_head: bool | None = None,
        exclude: list[str] | None = None,
        make_permanent: bool = True,
        log_per_layer: bool = True,
        verbose: int = 0,
    ) -> None:
        """
        Args:
            amount: final sparsity of the pruned weights (0.5 = half of them zero).
            method: ``l1_unstructured`` (smallest magnitudes), ``random_unstructured``, or
                ``ln_structured`` (whole rows, i.e. output neurons, by their L-``norm``).
            scope: ``global`` ranks all weights together; ``layer`` prunes each layer to ``amount``.
            start_epoch: first epoch at whose end pruning happens.
            end_epoch: epoch at whose end ``amount`` is reached (None = once, at ``start_epoch``).
            every_n_epochs: prune every n epochs between start and end.
            curve: how sparsity grows from start to end (``cubic``: Zhu & Gupta 2017).
            norm: the L-norm of ``ln_structured``.
            dim: the weight dimension ``ln_structured`` removes slices of (0 = output neurons).
            include_head: prune the output head too (None: yes, except for ``ln_structured``,
                where whole head rows would silence classes / tokens).
            exclude: module names to skip (default ``["embed"]``: the input embedding/projection).
            make_permanent: fold masks into weights at train end and in every checkpoint.
            log_per_layer: also log ``pruning/sparsity/<layer>``.
        """
        validate_pruning(method, amount, scope)
        validate_schedule(start_epoch, end_epoch, every_n_epochs, curve)
        self.target, self.method, self.scope = amount, method, scope
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.every_n_epochs, self.curve = every_n_epochs, curve
        self.include_head = method != "ln_structured" if include_head is None else include_head
        self.exclude = tuple(DEFAULT_EXCLUDE if exclude is None else exclude)
        self.log_per_layer = log_per_layer
        self.sparsity: float = 0.0
        structured = method == "ln_structured"
        super().__init__(
            pruning_fn=method,
            use_global_unstructured=scope == "global",
            amount=self.scheduled_amount,
            make_pruning_permanent=make_permanent,
            use_lottery_ticket_hypothesis=False,  # keep trained weights: we compress, not search tickets
            pruning_dim=dim if structured else None,
            pruning_norm=norm if structured else None,
            verbose=verbose,
        )

    def scheduled_amount(self, epoch: int) -> int | float:
        """What ``ModelPruning`` prunes after ``epoch``: an exact count (global) or a fraction (layer)."""
        if not is_pruning_epoch(epoch, self.start_epoch, self.end_epoch, self.every_n_epochs):
            return 0
        goal = target_sparsity(epoch, self.target, self.start_epoch, self.end_epoch, self.curve)
        if self.scope == "global":
            return step_count(*zero_count(self._parameters_to_prune), goal)
        return step_amount(sparsity(self._parameters_to_prune), goal)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._root = _pruned_module(pl_module)
        self._parameters_to_prune = prunable_parameters(self._root, self.include_head, self.exclude)
        super().setup(trainer, pl_module, stage)
        last = self.start_epoch if self.end_epoch is None else self.end_epoch
        max_epochs = trainer.max_epochs
        if stage == "fit" and max_epochs is not None and max_epochs > 0 and last >= max_epochs - 1:
            rank_zero_warn(
                f"PruningCallback reaches its target at epoch {last} but training has max_epochs={max_epochs}: "
                "the last pruning step gets no fine-tuning. Set end_epoch < max_epochs - 1."
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Checkpoints hold permanent weights; on resume, turn their zeros back into masks so the
        # schedule continues from the sparsity already reached instead of pruning from scratch.
        if trainer.ckpt_path:
            for module, name in self._parameters_to_prune:
                if not hasattr(module, f"{name}_mask"):
                    torch_prune.custom_from_mask(module, name, getattr(module, name) != 0)

    def apply_pruning(self, amount: int | float) -> None:
        super().apply_pruning(amount)
        sync_masks(self._parameters_to_prune)
        refresh_pruned_weights(self._root)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        refresh_pruned_weights(self._root)  # keeps the module deep-copyable between steps

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sparsity = sparsity(self._parameters_to_prune)
        epoch = trainer.current_epoch
        metrics = {
            "pruning/sparsity": self.sparsity,
            "pruning/target": target_sparsity(epoch, self.target, self.start_epoch, self.end_epoch, self.curve),
        }
        if self.log_per_layer:
            layers = layer_sparsity(self._root, self._parameters_to_prune)
            metrics.update({f"pruning/sparsity/{name}": value for name, value in layers.items()})
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)  # equal on all ranks


def _pruned_module(pl_module: L.LightningModule) -> nn.Module:
    """nl_lightning task modules keep the network in ``.model``; prune that, else the whole module."""
    model = getattr(pl_module, "model", None)
    return model if isinstance(model, nn.Module) else pl_module
