"""``StructuredPruningCallback``: remove attention heads and MLP channels on a schedule, fine-tuning between steps.

Lightning's ``ModelPruning`` (and our ``PruningCallback``) only masks weights: the model keeps its
size and speed. This callback calls ``prune_structured``'s core at the start of each scheduled
epoch, so the epochs after a step fine-tune a physically smaller model. Shapes change mid-fit, so it:

- carries the optimizer over: the sliced parameters replace the old ones in its param groups and
  their moments are sliced alike (``slice_optimizer_state``); the LR schedule goes on;
- keeps DDP ranks identical: scores come from identical weights (or all-reduced gradients), the
  plan is broadcast from rank 0, and the model is wrapped in DDP again (``configure_ddp``);
- resumes: the task module records the original widths in every checkpoint and a resumed run
  shrinks its model to the checkpoint's config before the weights load (``TaskModule.on_load_checkpoint``);
  the schedule is a function of the epoch and the widths reached, so a step the checkpoint
  missed is taken at the next epoch start, and accumulated Taylor scores are in the callback state.

Fractions count units of the original model: KV groups (query heads under MQA) and MLP channels.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_warn

from nl_lightning.compress.importance import Importance, TaylorScores, magnitude_scores
from nl_lightning.compress.optimizer_state import slice_optimizer_state
from nl_lightning.compress.schedule import ScheduleCurve, is_pruning_epoch, target_sparsity, validate_schedule
from nl_lightning.compress.structure import unit_maps
from nl_lightning.compress.structured import (
    apply_plan,
    config_widths,
    keep_count,
    plan_pruning,
    sync_plan,
    validate_structured,
)
from nl_lightning.errors import ConfigError


__all__ = ["StructuredPruningCallback"]


class StructuredPruningCallback(L.Callback):
    """Prune ``heads`` of the attention head groups and ``mlp`` of the MLP channels of ``pl_module.model``."""

    def __init__(
        self,
        heads: float = 0.5,
        mlp: float = 0.5,
        importance: Importance = "magnitude",
        start_epoch: int = 1,
        end_epoch: int | None = None,
        every_n_epochs: int = 1,
        curve: ScheduleCurve = "cubic",
    ) -> None:
        """
        Args:
            heads: fraction of the attention head groups (KV groups; query heads under MQA) to remove.
            mlp: fraction of the MLP hidden channels to remove.
            importance: ``magnitude`` (weights only) or ``taylor`` (first-order Taylor from the
                gradients of the training steps of the epoch before each pruning step).
            start_epoch: the first pruning step happens at the start of this epoch (>= 1 lets the
                model train dense first; ``taylor`` needs it).
            end_epoch: the epoch at whose start the final fractions are reached (None = one step).
            every_n_epochs: prune every n epochs between start and end.
            curve: how the removed fraction grows from start to end (``cubic``: Zhu & Gupta 2017).
        """
        validate_structured(heads, mlp, importance)
        validate_schedule(start_epoch, end_epoch, every_n_epochs, curve)
        if importance == "taylor" and start_epoch < 1:
            raise ConfigError(
                "StructuredPruningCallback(importance='taylor') scores units from the gradients of the epoch before "
                f"each step, so start_epoch={start_epoch} has none; set start_epoch >= 1 or importance='magnitude'."
            )
        self.heads, self.mlp, self.importance = heads, mlp, importance
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.every_n_epochs, self.curve = every_n_epochs, curve
        self._taylor: TaylorScores | None = None
        self._taylor_state: dict[str, Any] | None = None

    def goal(self, epoch: int) -> dict[str, float]:
        """The fractions to have removed by the start of ``epoch`` (the last scheduled step's targets)."""
        if epoch < self.start_epoch:
            return {"heads": 0.0, "mlp": 0.0}
        last = self.start_epoch if self.end_epoch is None else min(epoch, self.end_epoch)
        while not is_pruning_epoch(last, self.start_epoch, self.end_epoch, self.every_n_epochs):
            last -= 1
        return {kind: target_sparsity(last, final, self.start_epoch, self.end_epoch, self.curve)
                for kind, final in (("heads", self.heads), ("mlp", self.mlp))}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the strategy, the module and the schedule before training starts."""
        if stage != "fit":
            return
        if type(trainer.strategy) not in (SingleDeviceStrategy, DDPStrategy):
            raise ConfigError(
                "StructuredPruningCallback supports single-device and DDP training, got "
                f"{type(trainer.strategy).__name__}: sharded parameters (FSDP, DeepSpeed, ModelParallel) cannot be "
                "sliced on one rank. Use strategy='ddp'."
            )
        if not callable(getattr(pl_module, "record_structure", None)) or not hasattr(pl_module, "config"):
            raise ConfigError(
                f"StructuredPruningCallback needs an nl_lightning task module with a TransformerConfig "
                f"(TransformerLM, TransformerClassifier), got {type(pl_module).__name__}."
            )
        unit_maps(pl_module.model)  # a clear error now for a model without our blocks
        last = self.start_epoch if self.end_epoch is None else self.end_epoch
        if trainer.max_epochs is not None and trainer.max_epochs > 0 and last >= trainer.max_epochs:
            rank_zero_warn(
                f"StructuredPruningCallback reaches its target at the start of epoch {last} but training has "
                f"max_epochs={trainer.max_epochs}: the last step never happens. Set end_epoch < max_epochs."
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Prune to this epoch's goal if the model is wider (a no-op between steps and after the last)."""
        goal = self.goal(trainer.current_epoch)
        original = (pl_module.structured_pruning or {}).get("original") or config_widths(pl_module.config)
        keep = {"heads": _heads_keep(original, config_widths(pl_module.config), goal["heads"]),
                "mlp": keep_count(original["mlp_hidden"], goal["mlp"])}
        maps = unit_maps(pl_module.model)
        if any(keep[m.kind] is not None and keep[m.kind] < m.n_units for m in maps.values()):
            self._prune(trainer, pl_module, plan_pruning(maps, self._scores(pl_module, maps), keep), maps)
            pl_module.record_structure(original)
        self._log(pl_module, original)

    def _prune(self, trainer: L.Trainer, pl_module: L.LightningModule, plan: dict, maps: dict) -> None:
        """Slice the model, then everything that holds its parameters: the optimizers and DDP."""
        resized = apply_plan(pl_module.model, sync_plan(plan), maps)
        for optimizer in trainer.optimizers:
            slice_optimizer_state(optimizer, resized)
        if isinstance(trainer.strategy, DDPStrategy):  # DDP's buckets hold the old parameters
            trainer.strategy.model = pl_module
            trainer.strategy.configure_ddp()
        self._taylor, self._taylor_state = None, None  # scores of units that no longer exist

    def _scores(self, pl_module: L.LightningModule, maps: dict) -> dict[str, torch.Tensor]:
        taylor = self._taylor_scores(pl_module)
        if self.importance == "taylor" and taylor is None:
            rank_zero_warn("StructuredPruningCallback: no Taylor scores accumulated before this step; using magnitude.")
        return taylor if taylor is not None else magnitude_scores(pl_module.model, maps)

    def _taylor_scores(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
        scores = self._taylor_accumulator(pl_module) if self.importance == "taylor" else None
        return scores.scores if scores is not None and scores.batches else None

    def _taylor_accumulator(self, pl_module: L.LightningModule) -> TaylorScores:
        if self._taylor is None:
            self._taylor = TaylorScores(pl_module.model)
            if self._taylor_state is not None:
                self._taylor.load_state_dict(self._taylor_state)
        return self._taylor

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        """Taylor importance: add this step's (all-reduced) gradients when a pruning step comes next epoch."""
        epoch = trainer.current_epoch
        if self.importance == "taylor" and self.goal(epoch + 1) != self.goal(epoch):  # a step comes next epoch
            self._taylor_accumulator(pl_module).update()

    def _log(self, pl_module: L.LightningModule, original: dict[str, Any]) -> None:
        now = config_widths(pl_module.config)
        pl_module.log_dict({
            "structured_pruning/heads_removed": 1.0 - now["n_heads"] / original["n_heads"],
            "structured_pruning/mlp_removed": 1.0 - now["mlp_hidden"] / original["mlp_hidden"],
            "structured_pruning/parameters": float(sum(p.numel() for p in pl_module.model.parameters())),
        }, on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        """Accumulated Taylor scores (the schedule itself follows from the epoch and the model's widths)."""
        taylor = self._taylor.state_dict() if self._taylor is not None else self._taylor_state
        return {"taylor": taylor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore accumulated Taylor scores from a checkpoint."""
        self._taylor, self._taylor_state = None, state_dict.get("taylor")


def _heads_keep(original: dict[str, Any], now: dict[str, Any], fraction: float) -> int | None:
    """Units to keep: KV groups while there are several (query heads when the original was MQA)."""
    if original["n_kv_heads"] == 1:
        return keep_count(original["n_heads"], fraction)
    return keep_count(original["n_kv_heads"], fraction) if now["n_kv_heads"] > 1 else None
