"""What a finished study leaves behind: a summary table, ``trials.csv``, ``summary.json`` and the
best configuration(s) as runnable fit YAMLs.

``best.yaml`` is the fit config of the best trial (same keys, same seed) at the fit config's full
training budget, logging to ``<output_dir>/best/version_N``: the overrides that only shortened the
trials (``trainer.max_epochs`` and the like, see ``fit_config.BUDGET_KEYS``) are left out and listed
in its header, with the command line that reproduces the trial itself. With several objectives every
Pareto-optimal trial gets ``pareto/trial_<n>.yaml``, and ``best.yaml`` is the one of them that is
best on the first objective.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nl_lightning._io import write_atomic, write_json
from nl_lightning.tune.config import TuneConfig
from nl_lightning.tune.fit_config import best_fit_config, trial_dir_name, trial_only
from nl_lightning.tune.keys import get_key
from nl_lightning.tune.progress import fmt


def best_trials(study: optuna.Study, config: TuneConfig) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front sorted by the first objective."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    if not config.multi_objective:
        return [study.best_trial]
    sign = 1 if config.directions[0] == "minimize" else -1
    return sorted(study.best_trials, key=lambda t: (sign * t.values[0], t.number))


def write_best_configs(study: optuna.Study, config: TuneConfig, base: dict[str, Any], output_dir: Path) -> list[Path]:
    """``best.yaml`` (and ``pareto/trial_<n>.yaml``): runnable fit configs of the best trial(s)."""
    best = best_trials(study, config)
    written = []
    for i, trial in enumerate(best):
        params = config.search_space.to_keys(trial.params)
        if config.multi_objective:
            name = trial_dir_name(trial.number)
            fit = best_fit_config(base, config.overrides, params, trial.user_attrs["seed"], output_dir / "pareto", name)
            written.append(_write_yaml(output_dir / "pareto" / f"{name}.yaml", fit, trial, config, base))
        if i == 0:
            fit = best_fit_config(base, config.overrides, params, trial.user_attrs["seed"], output_dir)
            written.insert(0, _write_yaml(output_dir / "best.yaml", fit, trial, config, base))
    return written


def write_trials_csv(study: optuna.Study, output_dir: Path) -> Path:
    """Every trial, one row: number, state, value(s), params, user attrs, times (Optuna's own table)."""
    path = output_dir / "trials.csv"
    write_atomic(path, study.trials_dataframe(multi_index=False).to_csv(index=False))
    return path


def summarize(study: optuna.Study, config: TuneConfig) -> dict[str, Any]:
    """The figures of the summary: state counts and the best trial(s) with values and parameters."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name.lower() for t in trials)
    return {
        "study": study.study_name,
        "metrics": dict(config.metrics),
        "n_trials": len(trials),
        "states": {s: counts.get(s, 0) for s in ("complete", "pruned", "fail", "running", "waiting")},
        "seconds_per_trial": _median([t.duration.total_seconds() for t in trials if t.duration is not None]),
        "startup_s": _median([t.user_attrs["startup_s"] for t in trials if t.user_attrs.get("startup_s") is not None]),
        "best": [
            {"number": t.number, "values": dict(zip(config.objective_names, t.values)), "params": t.params,
             "seed": t.user_attrs.get("seed"), "run_dir": t.user_attrs.get("run_dir")}
            for t in best_trials(study, config)
        ],
    }


def format_summary(summary: dict[str, Any], files: list[Path] | None = None) -> str:
    """A plain-text table for the terminal."""
    states = ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n)
    lines = [f"Study {summary['study']!r}: {summary['n_trials']} trials ({states or 'none'})"]
    if summary.get("seconds_per_trial") is not None:
        startup = summary.get("startup_s")
        lines.append(f"Time per trial: median {summary['seconds_per_trial']:.1f} s"
                     + (f", of which {startup:.1f} s from its start to the first training step" if startup is not None else ""))
    best = summary["best"]
    if not best:
        lines.append("No trial completed: see the fail reasons in trials.csv (user_attrs_fail_reason).")
    else:
        title = "Best trial" if len(best) == 1 else f"Pareto front ({len(best)} trials, by {next(iter(summary['metrics']))})"
        lines.append(title + ":")
        names = list(summary["metrics"])
        params = list(dict.fromkeys(k for b in best for k in b["params"]))
        header = ["trial", *names, *params]
        rows = [[f"#{b['number']}", *(fmt(b["values"][n]) for n in names), *(fmt(b["params"].get(p, "-")) for p in params)]
                for b in best]
        lines += _table(header, rows)
    for path in files or []:
        lines.append(f"  wrote {path}")
    if best and files:
        lines.append(f"Reproduce the best trial: nl-lightning fit --config {files[0]}")
    return "\n".join(lines)


def write_report(study: optuna.Study, config: TuneConfig, base: dict[str, Any], output_dir: Path) -> tuple[str, dict]:
    """Write best YAML(s), trials.csv and summary.json; return the summary text and figures."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = write_best_configs(study, config, base, output_dir)
    files.append(write_trials_csv(study, output_dir))
    summary = summarize(study, config)
    files.append(write_json(output_dir / "summary.json", summary, default=str))
    return format_summary(summary, files), summary


def _write_yaml(path: Path, fit: dict[str, Any], trial: FrozenTrial, config: TuneConfig, base: dict[str, Any]) -> Path:
    values = ", ".join(f"{n}={fmt(v)}" for n, v in zip(config.objective_names, trial.values))
    header = (f"# Best configuration from `nl-lightning tune` (trial {trial.number}: {values}), at the fit config's "
              f"full budget:\n#   nl-lightning fit --config {path}\n")
    budget = trial_only(base, config.overrides)
    if budget:
        header += "# The trials trained with a shorter budget (the tune config's overrides), not applied here:\n"
        for key, value in budget.items():
            here = get_key(fit, key)
            header += f"#   {key}: {value}   (here: {'unset: Lightning default' if here is None else here})\n"
        flags = " ".join(f"--{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                         for key, value in budget.items())
        header += f"# Reproduce trial {trial.number} itself:\n#   nl-lightning fit --config {path} {flags}\n"
    write_atomic(path, header + yaml.safe_dump(fit, sort_keys=False))
    return path


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt_row = lambda r: "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return [fmt_row(header), *(fmt_row(r) for r in rows)]
