"""``nl-lightning tune``: what pruning buys, and what a trial costs over a direct fit.

    python benchmarks/tune.py            # full: 12 epochs x 8 batches per trial, budget 1200 steps, 2 repeats
    python benchmarks/tune.py --quick    # smoke test: 3 epochs x 4 batches per trial, budget 30, 1 repeat

1. Pruning at an equal **step budget** (training steps summed over trials, machine-independent):
   the same TPE study (same seed, same space: a log-uniform learning rate over [1e-4, 1] where the
   upper part diverges, plus width and pooling) on the classifier config, with the median pruner
   and with none. Figures: trials finished within the budget and the best val/loss reached.
   Target: >= 2x trials with the median pruner.
2. **Per-trial overhead**: the same fit config trained (a) directly in this process through
   ``build_cli(["fit", ...])``, (b) as ``python -m nl_lightning fit`` (what a user runs by hand),
   and (c) as a trial of a study with each launcher (forkserver, inline, subprocess); a trial's time
   is Optuna's own duration (sampling, config writing, launch, fit, result, storage).

The two arms of each comparison alternate order every repeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import write_result  # noqa: E402

#: Code that runs only in child processes, hashed with each result (``_results.code_files``).
MEASURES = ("nl_lightning/tune", "nl_lightning/cli.py", "nl_lightning/models", "nl_lightning/data", "configs")

CONFIGS = HERE.parent / "configs"
FIT = {  # the classifier config, smaller: a trial is a few seconds
    "trainer.max_epochs": 12, "trainer.limit_train_batches": 8, "trainer.limit_val_batches": 4,
    "trainer.log_every_n_steps": 4, "trainer.enable_model_summary": False, "trainer.enable_progress_bar": False,
    "model.init_args.config.d_model": 32, "model.init_args.config.n_layers": 1, "model.init_args.scheduler.warmup_steps": 0,
    "data.init_args.num_samples": 1024,
}
QUICK_FIT: dict[str, Any] = {}  # filled with QUICK under --quick
SPACE = {
    "model.init_args.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "model.init_args.config.d_model": {"type": "categorical", "choices": [16, 32]},
    "model.init_args.pooling": {"type": "categorical", "choices": ["mean", "attention"]},
}


QUICK = {"trainer.max_epochs": 3, "trainer.limit_train_batches": 4, "trainer.limit_val_batches": 2}


def write_fit(folder: Path, overrides: dict[str, Any]) -> Path:
    import yaml

    from nl_lightning.tune.keys import with_keys

    config = with_keys(yaml.safe_load((CONFIGS / "classifier.yaml").read_text()), {**FIT, **QUICK_FIT, **overrides})
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class StepBudget:
    """Stop the study once the trials' training steps (to their last validation) reach ``budget``."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0

    def __call__(self, study: Any, trial: Any) -> None:
        from nl_lightning.tune.trial import TrialResult

        result = TrialResult.load(trial.user_attrs["run_dir"]) if trial.user_attrs.get("run_dir") else None
        if result is not None and result.history:
            self.used += max(row["global_step"] for row in result.history)
        if self.used >= self.budget:
            study.stop()


def pruning_arm(folder: Path, pruner: str, budget: int, seed: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    from nl_lightning.tune.config import TuneConfig
    from nl_lightning.tune.objective import Objective, TrialFailed
    from nl_lightning.tune.study import create_study, load_study, prepare

    pruner_spec = {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0} if pruner == "median" else "none"
    config = TuneConfig(
        fit_config=str(write_fit(_mkdir(folder), {})), space=SPACE, n_trials=None, timeout=3600, sampler={"name": "tpe", "n_startup_trials": 4},
        pruner=pruner_spec, seed=seed, study_name=f"prune-{pruner}", output_dir=str(folder / pruner), plots=False,
    )
    prepared = prepare(config)
    create_study(prepared)
    study = load_study(prepared, heartbeat=True)
    budget_cb = StepBudget(budget)
    objective = Objective(config, prepared.base, prepared.study_name, prepared.output_dir, prepared.storage_url,
                          prepared.launcher)
    start = time.perf_counter()
    study.optimize(objective, callbacks=[budget_cb], catch=(TrialFailed,))
    wall = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "trials": len(trials), "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_val_loss": min((t.value for t in complete), default=None), "steps_used": budget_cb.used, "wall_s": wall,
    }


def direct_fit_inprocess(fit: Path) -> float:
    from nl_lightning.cli import build_cli

    start = time.perf_counter()
    build_cli(["fit", "--config", str(fit)])
    return time.perf_counter() - start


def direct_fit_subprocess(fit: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nl_lightning", "fit", "--config", str(fit)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def tune_trials(folder: Path, fit: Path, launcher: str, n_trials: int) -> list[float]:
    """Durations of ``n_trials`` identical trials (a one-choice space) through ``run_study``."""
    from nl_lightning.tune.config import TuneConfig
    from nl_lightning.tune.study import run_study

    config = TuneConfig(
        fit_config=str(fit), n_trials=n_trials, pruner="none", sampler="random", launcher=launcher, plots=False,
        space={"model.init_args.pooling": {"type": "categorical", "choices": ["mean"]}}, seed_per_trial=False,
        study_name=f"overhead-{launcher}", output_dir=str(folder / launcher),
    )
    study = run_study(config, out=lambda line: None)
    return [t.duration.total_seconds() for t in study.trials]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small budget, one repeat (a smoke test)")
    parser.add_argument("--budget", type=int, default=None, help="training steps per pruning arm")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="trials per launcher in the overhead part")
    args = parser.parse_args()
    args.budget = args.budget or (30 if args.quick else 1200)
    QUICK_FIT.update(QUICK if args.quick else {})
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.trials = args.trials or (2 if args.quick else 3)
    return args


def main() -> None:
    args = parse_args()
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    arms: dict[str, list[dict[str, Any]]] = {"median": [], "none": []}
    overhead: dict[str, list[float]] = {"inprocess_fit": [], "subprocess_fit": [], "forkserver_first": []}
    with tempfile.TemporaryDirectory(prefix="nl-bench-tune-") as tmp:
        root = Path(tmp)
        for r in range(args.repeats):
            order = ["median", "none"] if r % 2 == 0 else ["none", "median"]
            for pruner in order:
                arms[pruner].append(pruning_arm(root / f"r{r}", pruner, args.budget, seed=r))
            fit = write_fit(_mkdir(root / f"o{r}"), {"trainer.logger.init_args.save_dir": str(root / f"o{r}" / "direct")})
            launchers = ["forkserver", "inline", "subprocess"]
            steps = [("inprocess_fit", None), ("subprocess_fit", None)] + [(name, name) for name in launchers]
            for name, launcher in (steps if r % 2 == 0 else steps[::-1]):
                if launcher is None:
                    run = direct_fit_inprocess if name == "inprocess_fit" else direct_fit_subprocess
                    overhead[name].append(run(fit))
                    continue
                durations = tune_trials(root / f"o{r}", fit, launcher, args.trials)
                if launcher == "forkserver":  # its first trial also starts the server (imports)
                    overhead["forkserver_first"].append(durations[0])
                    durations = durations[1:]
                overhead.setdefault(launcher, []).extend(durations)
    write_result("tune", figures(arms, overhead, args), args, quick=args.quick)


def figures(arms: dict[str, list[dict[str, Any]]], overhead: dict[str, list[float]], args: argparse.Namespace) -> dict:
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    summary = {}
    for pruner, runs in arms.items():
        summary[pruner] = {
            "trials": med([r["trials"] for r in runs]), "complete": med([r["complete"] for r in runs]),
            "pruned": med([r["pruned"] for r in runs]), "failed": med([r["failed"] for r in runs]),
            "best_val_loss": med([r["best_val_loss"] for r in runs if r["best_val_loss"] is not None]),
            "runs": runs,
        }
    ratio = summary["median"]["trials"] / summary["none"]["trials"]
    times = {name: med(values) for name, values in overhead.items()}
    base = times["inprocess_fit"]
    return {
        "budget_steps": args.budget, "repeats": args.repeats, "pruning": summary, "trials_ratio": ratio,
        "target_trials_ratio": 2.0, "target_met": ratio >= 2.0,
        "overhead_s": times,
        "overhead_vs_inprocess_fit": {k: (v - base) for k, v in times.items() if k != "inprocess_fit" and v is not None},
    }


def render(figures: dict) -> str:
    """README section: pruning at an equal step budget, and per-trial cost by launcher."""
    p = figures["pruning"]
    lines = [
        f"Median pruner vs none on the classifier config, each with a budget of {figures['budget_steps']} training "
        "steps summed over its trials (each trial's steps to its last validation; the study stops after the trial "
        "that reaches the budget, so an arm can overrun it by part of one trial: *steps used*) "
        f"(TPE, same seed and space; medians of {figures['repeats']} interleaved repeats):",
        "",
        "| pruner | trials | complete | pruned | best val/loss | steps used |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("median", "none"):
        best = p[name]["best_val_loss"]
        used = sorted(run["steps_used"] for run in p[name].get("runs", []))
        used_text = "-" if not used else f"{used[0]}" if used[0] == used[-1] else f"{used[0]}-{used[-1]}"
        lines.append(f"| {name} | {p[name]['trials']:g} | {p[name]['complete']:g} | {p[name]['pruned']:g} | "
                     + (f"{best:.4f}" if best is not None else "-") + f" | {used_text} |")
    met = "met" if figures["target_met"] else "**not met**"
    lines += ["", f"Trials within the budget: **{figures['trials_ratio']:.2f}x** with pruning (target >= 2x: {met}).", ""]
    t = figures["overhead_s"]
    o = figures["overhead_vs_inprocess_fit"]
    lines += [
        "Wall time of one trial of the same fit config (seconds; overhead against the in-process fit):",
        "",
        "| how it ran | time | overhead |",
        "|---|---|---|",
        f"| `build_cli(['fit', ...])` in this process | {t['inprocess_fit']:.2f} | - |",
        f"| `python -m nl_lightning fit` (by hand) | {t['subprocess_fit']:.2f} | {o['subprocess_fit']:+.2f} |",
    ]
    for name, label in (("forkserver", "tune trial, forkserver (default)"), ("inline", "tune trial, inline"),
                        ("subprocess", "tune trial, subprocess (DDP)")):
        if t.get(name) is not None:
            lines.append(f"| {label} | {t[name]:.2f} | {o[name]:+.2f} |")
    lines += ["", f"The forkserver's first trial also starts its server (imports torch and Lightning once): "
              f"{t['forkserver_first']:.2f} s."]
    return "\n".join(lines)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def headline(figures: dict) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    met = "met" if figures["target_met"] else "**not met**"
    return (f"Search: median pruner vs none, a budget of {figures['budget_steps']} training steps each",
            f"{figures['trials_ratio']:.2f}x trials (target >= 2x: {met})")


if __name__ == "__main__":
    main()
