"""``TrialPruningCallback``: report a trial's validation metric to Optuna and prune it there.

optuna-integration's ``PyTorchLightningPruningCallback`` does the work where it fits: one process,
one validation per epoch (it reports at ``current_epoch``). It does not fit two other cases, which
this thin subclass handles itself:

- step budgets (``max_steps`` + ``val_check_interval``, as ``configs/char_lm.yaml``): several
  validations share an epoch, and Optuna ignores a second report at the same step, so they are
  reported at ``global_step``;
- DDP: only rank 0 talks to the storage; its decision is broadcast and every rank stops together
  (``trainer.should_stop``), so no rank is left waiting in a collective.

Every validation's metrics are recorded (the trial's value is read from them), and a metric that
is missing or not finite ends the trial with an error that says so, instead of being "pruned". A
validation loss that is not finite does too: a trial whose ``val/loss`` is NaN diverged, whatever its
accuracy says (chance level, typically). Other metrics may overflow on their own (perplexity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import optuna
from optuna_integration import PyTorchLightningPruningCallback

from nl_lightning.errors import ConfigError


class MetricNotLoggedError(ConfigError):
    """The metric a study optimizes is not among the model's validation metrics (a config error)."""


class NonFiniteMetricError(RuntimeError):
    """A validation metric became NaN or infinite (the trial diverged)."""


class TrialPruningCallback(PyTorchLightningPruningCallback):
    """Report ``monitor`` at each validation, record ``metrics``, prune when Optuna says so.

    Args:
        trial: the running ``optuna.Trial`` (in a trial process: rebuilt from the storage).
        monitor: the metric reported for pruning (the study's first logged objective).
        metrics: further validation metrics to record (other objectives).
        step: 'epoch', 'global_step', or 'auto' (global_step when the Trainer has ``max_steps``).
        prune: False records and reports nothing to Optuna (multi-objective studies cannot prune).
    """

    def __init__(
        self, trial: optuna.Trial, monitor: str, metrics: Sequence[str] = (),
        step: Literal["auto", "epoch", "global_step"] = "auto", prune: bool = True,
    ) -> None:
        if step not in ("auto", "epoch", "global_step"):
            raise ConfigError(f"step={step!r} is not supported; choose 'auto', 'epoch' or 'global_step'.")
        super().__init__(trial, monitor)
        self.metrics = list(dict.fromkeys([monitor, *metrics]))
        self.step, self.prune = step, prune
        self.unit = "epoch" if step == "epoch" else "global_step"
        self.history: list[dict[str, Any]] = []
        self.pruned_at: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == "auto":
            self.unit = "global_step" if trainer.max_steps not in (None, -1) else "epoch"
        if self.prune:
            super().on_fit_start(trainer, pl_module)  # DDP: checks the storage is an RDB
        else:
            self.is_ddp_backend = trainer._accelerator_connector.is_distributed

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = trainer.current_epoch if self.unit == "epoch" else trainer.global_step
        values = self._read(trainer, step)
        self.history.append({"epoch": trainer.current_epoch, "global_step": trainer.global_step, **values})
        if not self.prune:
            return
        if self.unit == "epoch" and not self.is_ddp_backend:
            super().on_validation_end(trainer, pl_module)  # optuna-integration: report, raise TrialPruned
            return
        should_prune = False
        if trainer.is_global_zero:
            self._trial.report(values[self.monitor], step=step)
            should_prune = self._trial.should_prune()
        if not trainer.strategy.broadcast(should_prune):
            return
        self.pruned_at = step
        if self.is_ddp_backend:
            trainer.should_stop = True  # every rank got the same decision: stop together
        else:
            raise optuna.TrialPruned(f"Trial was pruned at {self.unit} {step}.")

    def _read(self, trainer: L.Trainer, step: int) -> dict[str, float]:
        values = {}
        for name in self.metrics:
            value = trainer.callback_metrics.get(name)
            if value is None:
                raise MetricNotLoggedError(
                    f"The study optimizes {name!r}, but the model logged no such validation metric; "
                    f"logged: {sorted(trainer.callback_metrics)}. Set `metrics:` in the tune config to one of them."
                )
            value = float(value)
            if not math.isfinite(value):
                raise NonFiniteMetricError(f"{name} became {value} at {self.unit} {step} (the trial diverged).")
            values[name] = value
        diverged = {k: float(v) for k, v in trainer.callback_metrics.items()
                    if k.startswith("val") and k.endswith("loss") and v.numel() == 1 and not math.isfinite(float(v))}
        if diverged:
            name, value = next(iter(diverged.items()))
            raise NonFiniteMetricError(
                f"{name} became {value} at {self.unit} {step} (the trial diverged; its {self.monitor}="
                f"{values[self.monitor]:.4g} means nothing): lower the learning rate or narrow its range."
            )
        return values
