"""``GradientMonitor``: gradient norms, update/weight ratios and a NaN/Inf gradient check.

Runs between backward and the optimizer step (``on_before_optimizer_step``, before Lightning's
gradient clipping, so norms are the raw ones). Every ``every_n_steps`` optimizer steps it logs
``grad/norm``, ``grad/norm/<layer>`` and ``grad/update_ratio/pg<i>`` (``||dw|| / ||w||`` of each
optimizer parameter group, measured across the step). On every step it checks that all gradients
are finite; a NaN or Inf is reported with the first offending parameter and the step, and handled by
``nonfinite``: ``warn``, ``raise``, or ``skip_step`` (the gradients are dropped, so the optimizer
leaves every weight unchanged for that step; the LR schedule still advances).
Under DDP the gradients are already all-reduced here, so every rank takes the same decision; only
rank 0 logs. ``grad/nonfinite_steps`` counts the bad steps and survives checkpoint/resume.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from nl_lightning.errors import ConfigError, NLUserError
from nl_lightning.track.grad_stats import first_nonfinite_grad, grad_norms, snapshot, update_ratios

NonfinitePolicy = Literal["warn", "raise", "skip_step"]
POLICIES = ("warn", "raise", "skip_step")


class NonFiniteGradientError(NLUserError, FloatingPointError):
    """A gradient held NaN or Inf; the message names the parameter and the step."""


class GradientMonitor(L.Callback):
    """Log gradient statistics every ``every_n_steps`` steps and check gradients on every step."""

    def __init__(
        self,
        every_n_steps: int | None = None,
        per_layer: bool = True,
        update_ratio: bool = True,
        nonfinite: NonfinitePolicy = "raise",
        norm_type: float = 2.0,
    ) -> None:
        """
        Args:
            every_n_steps: optimizer steps between logs (None: the Trainer's ``log_every_n_steps``).
            per_layer: also log ``grad/norm/<layer>`` (one per module owning parameters).
            update_ratio: also log ``grad/update_ratio/pg<i>`` per optimizer parameter group.
            nonfinite: what a NaN/Inf gradient does: ``warn``, ``raise`` or ``skip_step``.
            norm_type: the p of the p-norms (2 = Euclidean).
        """
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"GradientMonitor(every_n_steps={every_n_steps}) must be >= 1 (or None).")
        if nonfinite not in POLICIES:
            raise ConfigError(f"GradientMonitor(nonfinite={nonfinite!r}): choose one of {POLICIES}.")
        self.every_n_steps, self.per_layer, self.update_ratio = every_n_steps, per_layer, update_ratio
        self.nonfinite, self.norm_type = nonfinite, norm_type
        self.nonfinite_steps: list[int] = []
        self._before: list[list[torch.Tensor]] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._every = self.every_n_steps or trainer.log_every_n_steps or 1

    def _is_log_step(self, trainer: L.Trainer) -> bool:
        return (trainer.global_step + 1) % self._every == 0 and bool(trainer.loggers)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        bad = first_nonfinite_grad(pl_module.named_parameters())
        if bad is not None:
            self._handle_nonfinite(trainer, pl_module, optimizer, *bad)
            return
        if not self._is_log_step(trainer):
            return
        self._log(trainer, pl_module, grad_norms(pl_module, self.per_layer, self.norm_type))
        if self.update_ratio and trainer.is_global_zero:
            self._before = snapshot(_groups(optimizer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._before is None:
            return
        ratios = update_ratios(_groups(trainer.optimizers[0]), self._before)
        self._before = None
        self._log(trainer, pl_module, {f"grad/update_ratio/pg{i}": r for i, r in enumerate(ratios)},
                  step=trainer.global_step - 1)

    def _handle_nonfinite(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any,
                          name: str, what: str) -> None:
        step = trainer.global_step
        message = (f"{what} gradient at step {step} (epoch {trainer.current_epoch}): first in parameter "
                   f"{name!r}. Lower the learning rate, clip gradients, or check the inputs and the loss of this batch.")
        if self.nonfinite == "raise":
            raise NonFiniteGradientError(message + " (GradientMonitor nonfinite='raise'; 'skip_step' skips such steps.)")
        self.nonfinite_steps.append(step)
        if self.nonfinite == "skip_step":
            for group in _groups(optimizer):
                for p in group:
                    p.grad = None  # torch optimizers leave parameters without a gradient untouched
            message += " Skipped: no weight changed at this step."
        rank_zero_warn(message)
        self._log(trainer, pl_module, {"grad/nonfinite_steps": float(len(self.nonfinite_steps))})

    @rank_zero_only
    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict[str, float],
             step: int | None = None) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step if step is None else step)

    def state_dict(self) -> dict[str, Any]:
        return {"nonfinite_steps": list(self.nonfinite_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.nonfinite_steps = list(state_dict.get("nonfinite_steps", []))


def _groups(optimizer: Any) -> list[list[torch.Tensor]]:
    optimizer = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch one
    return [list(group["params"]) for group in optimizer.param_groups]
