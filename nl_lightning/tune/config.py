"""``TuneConfig``: what ``nl-lightning tune`` reads from ``configs/tune/<name>.yaml``.

It names a fit config (any LightningCLI YAML), a search space over that config's keys, the
metric(s) to optimize, the budget, Optuna's sampler / pruner / storage, and where results go.
Plain values only (strings, numbers, mappings), checked in ``__post_init__`` with messages that
name the field, the value and the fix. No lightning import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nl_lightning.errors import ConfigError, MissingFileError
from nl_lightning.tune.space import SearchSpace

DIRECTIONS = ("minimize", "maximize")
PARAMS_METRIC = "params"
"""Objective name for the model's parameter count (counted before training)."""
LATENCY_METRIC = "latency_ms"
"""Objective name for the trained model's p50 forward latency (``nl_lightning.export.profile``)."""
DERIVED_METRICS = (PARAMS_METRIC, LATENCY_METRIC)
LAUNCHERS = ("auto", "forkserver", "subprocess", "inline")
PRUNE_STEPS = ("auto", "epoch", "global_step")


@dataclass
class LatencyConfig:
    """How ``latency_ms`` is measured on the trained model (random inputs of the model's kind)."""

    batch_size: int = 1
    seq_len: int = 64
    """Clamped to what the model accepts."""
    warmup: int = 3
    iters: int = 20

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "iters"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"latency.{name}={getattr(self, name)!r} must be a positive integer.")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"latency.warmup={self.warmup!r} must be an integer >= 0.")


@dataclass
class TuneConfig:
    """One study: a fit config, a search space over its keys, objectives and Optuna settings."""

    fit_config: str
    """The fit YAML each trial runs (any ``nl-lightning fit --config`` file)."""
    space: dict[str, Any]
    """Parameter name (a dotted key of the fit config) -> spec; see ``nl_lightning.tune.space``."""
    metrics: dict[str, str] = field(default_factory=lambda: {"val/loss": "minimize"})
    """Objective -> 'minimize' | 'maximize'. Logged validation metrics, 'params', 'latency_ms'."""
    reduce: Literal["best", "last"] = "best"
    """A trial's value: its best validation (what ModelCheckpoint keeps) or its last one."""
    n_trials: int | None = 20
    """Trials in the whole study (finished ones, over every run and worker); None = until timeout."""
    timeout: float | None = None
    """Seconds this command (each worker) keeps starting trials; None = no limit."""
    sampler: str | dict[str, Any] = "auto"
    """``tpe`` | ``random`` | ``nsga2`` | ``auto`` (TPE, NSGA-II for several objectives), or ``{name: ..., **kwargs}``."""
    pruner: str | dict[str, Any] = "auto"
    """``median`` | ``hyperband`` | ``none`` | ``auto`` (median; none for several objectives), or ``{name: ..., **kwargs}``."""
    prune_step: Literal["auto", "epoch", "global_step"] = "auto"
    """Step reported to the pruner: 'auto' = global_step when the fit has a step budget (max_steps)."""
    seed: int = 0
    """Sampler seed; trial n trains with seed_everything = seed + n (seed_per_trial) or seed."""
    seed_per_trial: bool = True
    study_name: str | None = None
    """Default: the tune config's file name (or the fit config's)."""
    output_dir: str | None = None
    """Default: runs/tune/<study_name>. Trials write <output_dir>/trial_<n>/."""
    storage: str | None = None
    """Any SQLAlchemy URL (postgresql://...); default sqlite:///<output_dir>/study.db."""
    heartbeat_interval: int = 10
    """Seconds between a running trial's heartbeats; a trial silent for grace_period is failed and retried."""
    grace_period: int | None = None
    """Default: 2 x heartbeat_interval."""
    max_retry: int = 3
    """Retries of a trial whose process died (RetryFailedTrialCallback)."""
    n_workers: int = 1
    """Worker processes on this machine, all on the same storage."""
    launcher: Literal["auto", "forkserver", "subprocess", "inline"] = "auto"
    """How a trial runs: a forked process (fast start), a fresh `python` (needed for DDP; 'auto' picks it
    when the fit uses several devices or nodes), or inside the study process (no isolation)."""
    trial_timeout: float | None = None
    """Seconds after which a trial process is killed and recorded as failed."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Fit-config keys set in every trial (and in best.yaml), e.g. {trainer.max_epochs: 5}."""
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    """Parameter sets ({name: value}) to try first, e.g. the current defaults."""
    max_params: int | None = None
    """Parameter budget (Optuna constraint): trials over it are pruned before training."""
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    plots: bool = True
    """Write PNG (matplotlib) and HTML (plotly, if installed) plots at the end."""

    def __post_init__(self) -> None:
        if isinstance(self.latency, dict):
            self.latency = LatencyConfig(**self.latency)
        if not isinstance(self.fit_config, (str, Path)) or not str(self.fit_config):
            raise ConfigError("fit_config must name the fit YAML to tune, e.g. fit_config: configs/classifier.yaml.")
        self.fit_config = str(self.fit_config)
        self.search_space = SearchSpace.from_dict(self.space)
        self._check_metrics()
        self._check_budget()
        for name in ("heartbeat_interval", "n_workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer.")
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ConfigError(
                f"grace_period={self.grace_period} must exceed heartbeat_interval={self.heartbeat_interval} "
                "(a live trial would be failed between two heartbeats); leave it unset for 2 x heartbeat_interval."
            )
        if not isinstance(self.max_retry, int) or self.max_retry < 0:
            raise ConfigError(f"max_retry={self.max_retry!r} must be an integer >= 0.")
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher={self.launcher!r} is not supported; choose one of {list(LAUNCHERS)}.")
        if self.prune_step not in PRUNE_STEPS:
            raise ConfigError(f"prune_step={self.prune_step!r} is not supported; choose one of {list(PRUNE_STEPS)}.")
        if self.reduce not in ("best", "last"):
            raise ConfigError(f"reduce={self.reduce!r} is not supported; choose 'best' or 'last'.")
        if self.study_name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.study_name):
            raise ConfigError(f"study_name={self.study_name!r} may use letters, digits, '_', '-' and '.' only.")
        for i, params in enumerate(self.enqueue):
            unknown = sorted(set(params) - set(self.search_space.names)) if isinstance(params, dict) else None
            if unknown is None or unknown:
                raise ConfigError(
                    f"enqueue[{i}]={params!r} must map parameter names of the space to values; unknown: {unknown}. "
                    f"Parameters: {self.search_space.names}."
                )

    def _check_metrics(self) -> None:
        if not isinstance(self.metrics, dict) or not self.metrics:
            raise ConfigError(f"metrics={self.metrics!r} must map metric names to directions, e.g. {{val/loss: minimize}}.")
        for name, direction in self.metrics.items():
            if direction not in DIRECTIONS:
                raise ConfigError(f"metrics[{name!r}]={direction!r} must be 'minimize' or 'maximize'.")
        if not self.logged_metrics:
            raise ConfigError(
                f"metrics={self.metrics} needs at least one metric the model logs in validation (e.g. val/loss): "
                f"{list(DERIVED_METRICS)} alone do not need training."
            )

    def _check_budget(self) -> None:
        if self.n_trials is None and self.timeout is None:
            raise ConfigError("Set n_trials, timeout or both: with neither the study would never end.")
        if self.n_trials is not None and (not isinstance(self.n_trials, int) or self.n_trials < 1):
            raise ConfigError(f"n_trials={self.n_trials!r} must be a positive integer (or null with a timeout).")
        for name in ("timeout", "trial_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive number of seconds (or null).")
        if self.max_params is not None and (not isinstance(self.max_params, int) or self.max_params < 1):
            raise ConfigError(f"max_params={self.max_params!r} must be a positive integer (or null for no budget).")

    @property
    def objective_names(self) -> list[str]:
        return list(self.metrics)

    @property
    def directions(self) -> list[str]:
        return list(self.metrics.values())

    @property
    def logged_metrics(self) -> list[str]:
        """Objectives read from the trial's validation logs (the first one is reported for pruning)."""
        return [m for m in self.metrics if m not in DERIVED_METRICS]

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def resolved_study_name(self, source: str | None = None) -> str:
        return self.study_name or Path(source or self.fit_config).stem

    def resolved_output_dir(self, source: str | None = None) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / "tune" / self.resolved_study_name(source)


def load_tune_config(path: str | Path, **overrides: Any) -> TuneConfig:
    """Read a tune YAML (keys as in ``TuneConfig``); ``overrides`` replace top-level keys."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Tune config {path} does not exist; see configs/tune/ for examples.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Tune config {path} must be a YAML mapping, got {type(data).__name__}.")
    data.update(overrides)
    known = set(TuneConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Tune config {path}: unknown key(s) {unknown}; valid keys are {sorted(known)}.")
    data.setdefault("study_name", path.stem)
    if "fit_config" in data:
        data["fit_config"] = str(resolve_fit_config(data["fit_config"], path.parent))
    return TuneConfig(**data)


def resolve_fit_config(fit_config: str | Path, base_dir: str | Path | None = None) -> Path:
    """A relative fit-config path is read beside the tune YAML (``base_dir``) first, as jsonargparse
    reads paths inside config files, then from the working directory."""
    path = Path(fit_config)
    if path.is_absolute() or base_dir is None:
        return path
    beside = Path(base_dir) / path
    return beside if beside.is_file() else path
