"""``run_study``: check a tune config, create or resume its Optuna study, run the trials (in this
process or in ``n_workers`` worker processes on the same storage), then write the results.

Re-running the same config resumes: the study is loaded from its storage, a trial that was running
when its process died is failed by the heartbeat and retried with the same parameters, and only the
trials still missing from ``n_trials`` are run (see ``counted_trials``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nl_lightning._process import die_with_parent
from nl_lightning.errors import ConfigError, NLUserError
from nl_lightning.tune.config import TuneConfig
from nl_lightning.tune.fit_config import WORKERS_KEY, trial_defaults
from nl_lightning.tune.keys import get_key
from nl_lightning.tune.launch import choose_launcher, forkserver_context
from nl_lightning.tune.objective import Objective, TrialFailed, budget_constraint
from nl_lightning.tune.progress import ProgressLine, StopWhenDone
from nl_lightning.tune.samplers import build_pruner, build_sampler, check_specs
from nl_lightning.tune.storage import counted_trials, default_storage_url, open_storage, redact
from nl_lightning.tune.validate import check_fit_config, load_fit_yaml


class WorkersFailedError(NLUserError, RuntimeError):
    """Tune worker processes exited with an error; each printed its own (traceback included) above."""


@dataclass
class Prepared:
    """A checked study: everything a worker needs (picklable for worker processes)."""

    config: TuneConfig
    base: dict[str, Any]
    study_name: str
    output_dir: Path
    storage_url: str
    launcher: str


def prepare(config: TuneConfig, source: str | None = None) -> Prepared:
    """Check everything that can be checked before a trial: names, budget, every key and value of
    the space against the fit config's parser."""
    check_specs(config.sampler, config.pruner, len(config.metrics))
    base = load_fit_yaml(config.fit_config)
    check_fit_config(base, config.overrides, config.search_space, config.fit_config)
    output_dir = config.resolved_output_dir(source)
    storage_url = config.storage or default_storage_url(output_dir)
    launcher = choose_launcher(config.launcher, {**base, "trainer": {**(base.get("trainer") or {}), **_trainer_overrides(config)}})
    return Prepared(config, base, config.resolved_study_name(source), output_dir, storage_url, launcher)


def run_study(
    config: TuneConfig, source: str | None = None, n_workers: int | None = None, out: Callable[[str], None] = print,
    prepared: Prepared | None = None,
) -> optuna.Study:
    """Run (or resume) the study described by ``config``; returns it once no trial is left to run.

    Args:
        config: the tune config.
        source: the tune YAML it came from (default study name and output folder).
        n_workers: overrides ``config.n_workers``.
        out: where progress lines go (one per finished trial).
        prepared: the result of ``prepare(config, source)`` if the caller already has it.
    """
    prepared = prepared or prepare(config, source)
    prepared.output_dir.mkdir(parents=True, exist_ok=True)
    study = create_study(prepared)
    out(f"study {prepared.study_name!r}: {counted_trials(study)} of {config.n_trials or 'unlimited'} trials done; "
        f"storage {redact(prepared.storage_url)}; trials run via {prepared.launcher}; output {prepared.output_dir}")
    if WORKERS_KEY in trial_defaults(prepared.base, config.overrides):
        out(f"trials read their data in-process ({WORKERS_KEY}: 0 instead of {get_key(prepared.base, WORKERS_KEY)}: "
            "worker start-up costs a short trial more than it saves); best.yaml keeps the fit config's value. "
            f"Set overrides: {{{WORKERS_KEY}: N}} to keep workers in trials.")
    workers = n_workers or config.n_workers
    if workers == 1:
        optimize(prepared, worker=0, out=out)
    else:
        _run_workers(prepared, workers)
    return load_study(prepared)


def create_study(prepared: Prepared) -> optuna.Study:
    """Create the study (or load it), refusing to resume one whose objectives differ."""
    config = prepared.config
    storage = open_storage(prepared.storage_url)
    directions = config.directions
    study = optuna.create_study(
        study_name=prepared.study_name, storage=storage, directions=directions, load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    names = study.user_attrs.get("metrics")
    if stored != directions or (names is not None and names != config.objective_names):
        raise ConfigError(
            f"Study {prepared.study_name!r} in {redact(prepared.storage_url)} optimizes {names or '?'} {stored}, "
            f"but the config asks for {config.objective_names} {directions}; use another study_name or output_dir."
        )
    if names is None:
        study.set_user_attr("metrics", config.objective_names)
        study.set_user_attr("fit_config", str(config.fit_config))
    for params in config.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def load_study(prepared: Prepared, worker: int = 0, heartbeat: bool = False) -> optuna.Study:
    config = prepared.config
    storage = open_storage(
        prepared.storage_url, config.heartbeat_interval if heartbeat else None, config.grace_period, config.max_retry,
    )
    constraints = budget_constraint if config.max_params is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = build_sampler(config.sampler, len(config.metrics), seed=config.seed + 1000 * worker,
                                constraints_func=constraints)
    return optuna.load_study(
        study_name=prepared.study_name, storage=storage, sampler=sampler,
        pruner=build_pruner(config.pruner, len(config.metrics)),
    )


def optimize(prepared: Prepared, worker: int = 0, out: Callable[[str], None] = print) -> None:
    """One worker's loop: run trials until ``n_trials`` are counted or ``timeout`` passes."""
    config = prepared.config
    study = load_study(prepared, worker, heartbeat=True)
    if config.n_trials is not None and counted_trials(study) >= config.n_trials:
        return
    objective = Objective(
        config, prepared.base, prepared.study_name, prepared.output_dir, prepared.storage_url, prepared.launcher,
    )
    callbacks = [StopWhenDone(config.n_trials), ProgressLine(config, out, worker if config.n_workers > 1 else None)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(objective, timeout=config.timeout, callbacks=callbacks, catch=(TrialFailed,))


def _worker_main(prepared: Prepared, worker: int) -> None:
    die_with_parent()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize(prepared, worker)


def _run_workers(prepared: Prepared, n_workers: int) -> None:
    """``n_workers`` processes, each its own ``optimize`` loop on the shared storage; forked from the
    same pre-imported server as trials, so a worker starts without a fresh interpreter or imports."""
    ctx = forkserver_context()
    procs = [ctx.Process(target=_worker_main, args=(prepared, i), name=f"tune-worker-{i}") for i in range(n_workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise WorkersFailedError(f"Tune worker(s) {failed} exited with an error (see their output above); "
                                 "finished trials are kept: re-run the same command to resume.")


def _trainer_overrides(config: TuneConfig) -> dict[str, Any]:
    prefix = "trainer."
    return {k[len(prefix):]: v for k, v in config.overrides.items() if k.startswith(prefix) and "." not in k[len(prefix):]}


def tune(
    config: TuneConfig, source: str | None = None, report_only: bool = False, out: Callable[[str], None] = print,
) -> tuple[optuna.Study, dict[str, Any], bool]:
    """Run (or resume) the study, then write and print its results; what ``nl-lightning tune`` does.

    Returns (study, summary figures, interrupted). Ctrl-C stops the trials but still writes the
    results of the finished ones (the study resumes on the next run).
    """
    from nl_lightning.tune.plots import save_plots
    from nl_lightning.tune.report import write_report

    prepared = prepare(config, source)
    interrupted = False
    if not report_only:
        try:
            run_study(config, source, out=out, prepared=prepared)
        except KeyboardInterrupt:
            interrupted = True
            out("interrupted: finished trials are kept; run the same command again to resume.")
    if report_only and prepared.study_name not in optuna.study.get_all_study_names(open_storage(prepared.storage_url)):
        raise ConfigError(
            f"--report_only: there is no study {prepared.study_name!r} in {redact(prepared.storage_url)}; "
            "run the same command without --report_only to start it."
        )
    study = load_study(prepared)
    text, summary = write_report(study, config, prepared.base, prepared.output_dir)
    if config.plots:
        files, skipped = save_plots(study, config, prepared.output_dir / "plots")
        text += f"\n  wrote {len(files)} plots to {prepared.output_dir / 'plots'}"
        text += "".join(f"\n  skipped plot {reason}" for reason in skipped)
    out(text)
    return study, summary, interrupted
