"""The Optuna objective of a study: sample the space, write the trial's fit config, check the
parameter budget, run the trial, and turn its result into Optuna's terms.

A trial's ``user_attrs`` say where it ran and why it ended: ``seed``, ``run_dir``, ``params``
(parameter count), ``constraint`` (count - budget, for Optuna's constrained samplers), ``step``,
``checkpoint``, ``fail_reason``, ``startup_s`` (from the trial's start to its first training step),
and ``host`` / ``pid`` of the study process that ran it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
import yaml

from nl_lightning._io import write_atomic
from nl_lightning._process import describe_exit
from nl_lightning.errors import ConfigError
from nl_lightning.tune.config import PARAMS_METRIC, TuneConfig
from nl_lightning.tune.fit_config import trial_dir_name, trial_fit_config
from nl_lightning.tune.launch import run_in_process
from nl_lightning.tune.trial import CONFIG_FILE, LOG_FILE, TrialResult, TrialSpec


class TrialFailed(RuntimeError):
    """A trial ended in failure; Optuna records it (with the reason) and the study goes on."""


class Objective:
    """Callable for ``study.optimize``: one call runs one trial of ``config`` on the fit YAML ``base``."""

    def __init__(
        self, config: TuneConfig, base: dict[str, Any], study_name: str, output_dir: Path, storage_url: str,
        launcher: str,
    ) -> None:
        self.config, self.base, self.study_name = config, base, study_name
        self.output_dir, self.storage_url, self.launcher = Path(output_dir), storage_url, launcher

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        started = time.time()
        cfg = self.config
        params = cfg.search_space.sample(trial)
        seed = cfg.seed + trial.number if cfg.seed_per_trial else cfg.seed
        run_dir = self.output_dir / trial_dir_name(trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        fit = trial_fit_config(self.base, cfg.overrides, params, seed, run_dir)
        write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(fit, sort_keys=False))
        where = {"host": socket.gethostname(), "pid": os.getpid()}  # which worker ran it
        for key, value in {"seed": seed, "run_dir": str(run_dir), "fail_reason": None, "startup_s": None, **where}.items():
            trial.set_user_attr(key, value)  # overwrite what a retried trial inherited
        n_params = self._check_budget(trial, fit)
        result = self._run(trial, run_dir)
        trial.set_user_attr("step", result.step)
        trial.set_user_attr("checkpoint", result.checkpoint)
        if result.first_step_time is not None:  # launch + parse + set-up + sanity check
            trial.set_user_attr("startup_s", round(result.first_step_time - started, 3))
        if result.state == "pruned":
            raise optuna.TrialPruned(result.reason)
        if result.state == "fail":
            trial.set_user_attr("fail_reason", result.reason)
            if result.error == "MetricNotLoggedError":
                raise StudyConfigError(result.reason or "the study's metric was not logged")
            raise TrialFailed(result.reason)
        values = [float(n_params) if name == PARAMS_METRIC else result.values[name] for name in cfg.metrics]
        return values if cfg.multi_objective else values[0]

    def _check_budget(self, trial: optuna.Trial, fit: dict[str, Any]) -> int | None:
        """Count parameters when an objective or the budget needs them; over budget -> pruned untrained."""
        cfg = self.config
        if PARAMS_METRIC not in cfg.metrics and cfg.max_params is None:
            return None
        from nl_lightning.tune.model_size import count_parameters

        try:
            n_params = count_parameters(fit["model"])
        except Exception as err:
            from nl_lightning.tune.validate import explain

            reason = f"the model could not be built: {explain(err)}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from None
        trial.set_user_attr("params", n_params)
        if cfg.max_params is not None:
            trial.set_user_attr("constraint", [float(n_params - cfg.max_params)])
            if n_params > cfg.max_params:
                raise optuna.TrialPruned(f"{n_params:,} parameters > max_params={cfg.max_params:,}: not trained")
        return n_params

    def _run(self, trial: optuna.Trial, run_dir: Path) -> TrialResult:
        cfg = self.config
        spec = TrialSpec(
            study_name=self.study_name, trial_id=trial._trial_id, number=trial.number, run_dir=str(run_dir),
            metrics=dict(cfg.metrics), reduce=cfg.reduce, prune=not cfg.multi_objective, prune_step=cfg.prune_step,
            pruner=cfg.pruner, latency=vars(cfg.latency),
        )
        spec.save()
        (run_dir / "result.json").unlink(missing_ok=True)
        if self.launcher == "inline":
            from nl_lightning.tune.trial import run_trial

            return run_trial(spec, trial)
        code, killed = run_in_process(self.launcher, spec, self.storage_url, cfg.trial_timeout)
        result = TrialResult.load(run_dir)
        if result is None or killed:
            reason = killed or describe_exit(code, run_dir / LOG_FILE)
            result = TrialResult("fail", reason=reason, error="ProcessExit", history=result.history if result else [])
        return result


class StudyConfigError(ConfigError):
    """A mistake in the tune config that every trial would hit (e.g. a metric the model never logs)."""


def budget_constraint(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna ``constraints_func``: <= 0 is feasible (within ``max_params``)."""
    return list(trial.user_attrs.get("constraint", [0.0]))
