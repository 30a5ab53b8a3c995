"""Study callbacks: one line per finished trial, and a stop once ``n_trials`` trials are counted.

``StopWhenDone`` plays the part of Optuna's ``MaxTrialsCallback`` with the count of
``counted_trials``: failures count (a study whose every trial crashes still ends), a failure that
was retried does not (its retry does). As with ``MaxTrialsCallback``, parallel workers may each
finish the trial they were running when the count is reached.
"""

from __future__ import annotations

import logging
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
    """``trial 7 complete  val/loss=1.2345  12.3s (start 1.1s)  lr=0.0031 n_layers=2 | best 1.2011 (#4)  8/20``

    ``start``: from the trial's start to its first training step (launch, config parse, model and data
    set-up, sanity check). A failed trial's line ends with its reason, so Optuna's own report of it (a
    traceback of an expected failure) is dropped while a ``ProgressLine`` is installed.
    """

    def __init__(self, config: TuneConfig, out: Callable[[str], None] = print, worker: int | None = None) -> None:
        self.config, self.out, self.worker = config, out, worker
        logging.getLogger("optuna.study._optimize").addFilter(_OPTUNA_FAILED_TRIAL)

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
        startup = trial.user_attrs.get("startup_s")
        parts.append(f"  {trial.duration.total_seconds():.1f}s" + (f" (start {startup:.1f}s)" if startup is not None else ""))
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


class _DropFailedTrialLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Trial ") and " failed with " in message)


_OPTUNA_FAILED_TRIAL = _DropFailedTrialLogs()


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short(key: str, parts: int = 2) -> str:
    """``model.init_args.optimizer.lr`` -> ``optimizer.lr`` (the last ``parts`` parts) for narrow lines."""
    kept = [p for p in key.split(".") if p != "init_args"]
    return ".".join(kept[-parts:])


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's ``short`` name, longer where two would be the same (``a.config.dropout`` / ``b.config.dropout``)."""
    names = {}
    for key in keys:
        parts = 2
        while parts < len(key.split(".")) and sum(short(k, parts) == short(key, parts) for k in keys) > 1:
            parts += 1
        names[key] = short(key, parts)
    return names
