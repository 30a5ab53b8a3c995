"""Study callbacks: one line per finished trial, and a stop once ``n_trials`` trials are counted.

``StopWhenDone`` plays the part of Optuna's ``MaxTrialsCallback`` with the count of
``counted_trials``: failures count (a study whose every trial crashes still ends), a failure that
was retried does not (its retry does). As with ``MaxTrialsCallback``, parallel workers may each
finish the trial they were running when the count is reached.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nl_lightning.tune.config import TuneConfig
from nl_lightning.tune.storage import counted_trials


class StopWhenDone:
    def __init__(self, n_trials: int | None) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.n_trials is not None and counted_trials(study) >= self.n_trials:
            study.stop()


class ProgressLine:
    """``trial 7 complete  val/loss=1.2345  12.3s  lr=0.0031 n_layers=2 | best 1.2011 (#4)  8/20``"""

    def __init__(self, config: TuneConfig, out: Callable[[str], None] = print, worker: int | None = None) -> None:
        self.config, self.out, self.worker = config, out, worker

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.out(format_trial_line(study, trial, self.config, self.worker))


def format_trial_line(study: optuna.Study, trial: FrozenTrial, config: TuneConfig, worker: int | None = None) -> str:
    state = trial.state.name.lower()
    parts = [f"[worker {worker}] " if worker is not None else "", f"trial {trial.number:<4d} {state:<8s}"]
    if trial.state == TrialState.COMPLETE and trial.values is not None:
        parts.append("  " + " ".join(f"{n}={fmt(v)}" for n, v in zip(config.objective_names, trial.values)))
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        step, value = max(trial.intermediate_values.items())
        parts.append(f"  at step {step}: {config.objective_names[0]}={fmt(value)}")
    if trial.duration is not None:
        parts.append(f"  {trial.duration.total_seconds():.1f}s")
    parts.append("  " + " ".join(f"{short(k)}={fmt(v)}" for k, v in trial.params.items()))
    if trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason"):
        parts.append(f"  ({trial.user_attrs['fail_reason'][:200]})")
    elif trial.state == TrialState.PRUNED and trial.user_attrs.get("params") and not trial.intermediate_values:
        parts.append(f"  ({trial.user_attrs['params']:,} parameters: over max_params)")
    if not config.multi_objective:
        try:
            best = study.best_trial
            parts.append(f"  | best {fmt(best.value)} (#{best.number})")
        except ValueError:
            pass
    if config.n_trials:
        parts.append(f"  {counted_trials(study)}/{config.n_trials}")
    return "".join(parts)


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short(key: str) -> str:
    """``model.init_args.optimizer.lr`` -> ``optimizer.lr`` (the last two parts) for narrow lines."""
    parts = [p for p in key.split(".") if p != "init_args"]
    return ".".join(parts[-2:])
