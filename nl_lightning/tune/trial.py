"""One trial: ``nl-lightning fit`` of the trial's config, with the pruning callback, through
``nl_lightning.cli.build_cli``; its outcome is a ``TrialResult`` written to ``result.json``.

``run_trial`` is the same function whichever way the trial runs (inside the study process, in a
forked process, or in a fresh ``python -m nl_lightning.tune.launch`` for DDP, where every rank runs
it and rank 0 writes the result). Anything the fit raises becomes a failed result with the reason;
a process that dies without a result (SIGKILL, out of memory) is reported by the launcher
(``tune/launch.py``, which holds the trial process's lifecycle).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import optuna

from nl_lightning._io import write_json
from nl_lightning.cli import build_cli
from nl_lightning.errors import parse_error_summary
from nl_lightning.tune.config import LATENCY_METRIC
from nl_lightning.tune.pruning import MetricNotLoggedError, TrialPruningCallback

RESULT_FILE = "result.json"
SPEC_FILE = "trial.json"
CONFIG_FILE = "fit.yaml"
LOG_FILE = "trial.log"
PID_FILE = "trial.pid"


@dataclass
class TrialSpec:
    """What a trial process needs (the storage URL travels apart: it may hold a password)."""

    study_name: str
    trial_id: int
    number: int
    run_dir: str
    metrics: dict[str, str]
    """Objective -> direction; logged metrics are read from validation, 'latency_ms' measured after fit."""
    reduce: str = "best"
    prune: bool = True
    prune_step: str = "auto"
    pruner: Any = "median"
    latency: dict[str, int] = field(default_factory=dict)

    @property
    def logged(self) -> list[str]:
        from nl_lightning.tune.config import DERIVED_METRICS

        return [m for m in self.metrics if m not in DERIVED_METRICS]

    def save(self) -> Path:
        return write_json(Path(self.run_dir) / SPEC_FILE, asdict(self), default=str)

    @classmethod
    def load(cls, path: str | Path) -> "TrialSpec":
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class TrialResult:
    state: Literal["complete", "pruned", "fail"]
    values: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None
    """Exception class name of a failure."""
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int | None = None
    """global_step of the validation the values come from."""
    checkpoint: str | None = None
    first_step_time: float | None = None
    """Wall-clock time (``time.time()``) the first training step started: start-up = this - trial start."""

    def save(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / RESULT_FILE, asdict(self), default=str)

    @classmethod
    def load(cls, run_dir: str | Path) -> "TrialResult | None":
        path = Path(run_dir) / RESULT_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def run_trial(spec: TrialSpec, trial: optuna.Trial) -> TrialResult:
    """Fit ``<run_dir>/fit.yaml`` with a ``TrialPruningCallback`` for ``trial``; never raises for
    what the fit does (pruned, diverged, crashed), only returns it."""
    first_step = _FirstStep()
    result = _fit(spec, trial, first_step)
    result.first_step_time = first_step.time
    return result


def _fit(spec: TrialSpec, trial: optuna.Trial, first_step: L.Callback) -> TrialResult:
    monitor = spec.logged[0]
    callback = TrialPruningCallback(trial, monitor, spec.logged[1:], step=spec.prune_step, prune=spec.prune)
    config = str(Path(spec.run_dir) / CONFIG_FILE)
    try:
        with warnings.catch_warnings():  # a forked trial still has the study's sys.argv: not an error here
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            cli = build_cli(["fit", "--config", config], trainer_defaults={"callbacks": [callback, first_step]})
    except optuna.TrialPruned as err:
        return TrialResult("pruned", reason=str(err), history=callback.history)
    except Exception as err:  # the reason in one line: jsonargparse's nested Union report cut to what matters
        reason = f"{type(err).__name__}: {parse_error_summary(str(err))}"
        return TrialResult("fail", reason=reason, error=type(err).__name__, history=callback.history)
    except SystemExit as err:  # LightningCLI rejected the config (it printed why to the trial log)
        return TrialResult("fail", reason=f"the fit config was rejected (exit {err.code}); see {LOG_FILE}", error="SystemExit")
    trainer = cli.trainer
    if callback.pruned_at is not None:
        return TrialResult("pruned", reason=f"pruned at {callback.unit} {callback.pruned_at}", history=callback.history)
    if trainer.interrupted:
        return TrialResult("fail", reason="training was interrupted", error="KeyboardInterrupt", history=callback.history)
    if not callback.history:
        return TrialResult(
            "fail", reason="no validation ran: check limit_val_batches / val_check_interval / check_val_every_n_epoch",
            error=MetricNotLoggedError.__name__,
        )
    chosen = _chosen(callback.history, monitor, spec.metrics[monitor], spec.reduce)
    values = {name: chosen[name] for name in spec.logged}
    if LATENCY_METRIC in spec.metrics and trainer.is_global_zero:
        values[LATENCY_METRIC] = measure_latency(cli.model, **spec.latency)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    return TrialResult("complete", values, history=callback.history, step=chosen["global_step"], checkpoint=best)


class _FirstStep(L.Callback):
    """Records when the first training step starts (the trial's start-up ends there)."""

    def __init__(self) -> None:
        self.time: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.time is None:
            self.time = time.time()


def _chosen(history: list[dict[str, Any]], monitor: str, direction: str, reduce: str) -> dict[str, Any]:
    """The validation a trial's value comes from: the best one of ``monitor``, or the last."""
    if reduce == "last":
        return history[-1]
    pick = min if direction == "minimize" else max
    return pick(history, key=lambda row: row[monitor])


def measure_latency(model: Any, batch_size: int = 1, seq_len: int = 64, warmup: int = 3, iters: int = 20) -> float:
    """p50 forward latency (ms) of the model's network on a random input, via the project's profiler."""
    import torch

    from nl_lightning.export.profile import profile
    from nl_lightning.export.signature import network, signature_of

    net = network(model).eval()
    signature = signature_of(net)
    seq = signature.clamp_seq(seq_len)
    device = next(net.parameters()).device
    with torch.no_grad():
        results = profile({"model": net}, lambda b: signature.example(b, seq).to(device), [batch_size], warmup, iters)
    return results[0].p50_ms


def connect(spec: TrialSpec, storage_url: str) -> optuna.Trial:
    """Rebuild the running trial in a trial process, from the storage (no heartbeat here: the
    study process beats for it)."""
    from nl_lightning.tune.samplers import build_pruner
    from nl_lightning.tune.storage import open_storage

    study = optuna.load_study(  # the study process has checked the schema: skip the check here
        study_name=spec.study_name, storage=open_storage(storage_url, skip_compatibility_check=True),
        sampler=optuna.samplers.RandomSampler(), pruner=build_pruner(spec.pruner, len(spec.metrics)),
    )
    return optuna.Trial(study, spec.trial_id)
