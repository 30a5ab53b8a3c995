"""Real studies on tiny models: reproducible best config, pruning, robust trials, step budgets."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from nl_lightning.cli import main as cli_main
from nl_lightning.tune.study import run_study, tune
from tune_utils import make_config


def _event_scalars(run_dir: Path, tag: str) -> list[float]:
    """Values of ``tag`` read back from the TensorBoard event files under ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {run_dir}"
    values = []
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [e.value for e in acc.Scalars(tag)]
    return values


def test_best_yaml_is_the_full_budget_run_and_its_header_reproduces_the_trial(tmp_path, classifier_fit):
    """The trials train 2 epochs (a tune override), the fit config 3: best.yaml is the 3-epoch run of the
    best keys and seed (the same numbers as fitting the fit config with them), and its header names the
    trial-only setting with the command line that reproduces the trial itself."""
    config = make_config(
        tmp_path, classifier_fit, n_trials=2, pruner="none", sampler={"name": "random"}, plots=True,
        overrides={"trainer.max_epochs": 2},
        space={"model.init_args.optimizer.lr": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True},
               "model.init_args.pooling": {"type": "categorical", "choices": ["mean", "gem"]}},
    )
    lines: list[str] = []
    study, summary, interrupted = tune(config, out=lines.append)
    out = tmp_path / "study"
    best = study.best_trial
    assert not interrupted and summary["best"][0]["number"] == best.number
    assert summary["states"]["complete"] == 2
    assert summary["seconds_per_trial"] > summary["startup_s"] > 0
    assert "Time per trial: median" in lines[-1] and "to the first training step" in lines[-1]

    # best.yaml: the trial's sampled keys and seed at the fit config's budget, logging to <study>/best/version_N.
    text = (out / "best.yaml").read_text()
    fit = yaml.safe_load(text)
    assert fit["model"]["init_args"]["optimizer"]["lr"] == best.params["model.init_args.optimizer.lr"]
    assert fit["model"]["init_args"]["pooling"] == best.params["model.init_args.pooling"]
    assert fit["seed_everything"] == best.user_attrs["seed"] == best.number  # seed 0 + trial number
    assert fit["trainer"]["max_epochs"] == 3
    assert "#   trainer.max_epochs: 2   (here: 3)\n" in text
    command = re.search(r"^#   (nl-lightning fit --config \S+best\.yaml --trainer\.max_epochs=2)$", text, re.M)
    assert command, text[:800]

    assert cli_main(["fit", "--config", str(out / "best.yaml")]) == 0
    full = _event_scalars(out / "best" / "version_0", "val/loss")
    direct = tmp_path / "direct"
    assert cli_main(["fit", "--config", str(classifier_fit), f"--seed_everything={best.number}",
                     f"--model.init_args.optimizer.lr={best.params['model.init_args.optimizer.lr']}",
                     f"--model.init_args.pooling={best.params['model.init_args.pooling']}",
                     f"--trainer.logger.init_args.save_dir={direct}"]) == 0
    assert len(full) == 3 and full == _event_scalars(direct, "val/loss")  # the full-budget run, number for number

    assert cli_main(command.group(1).split()[1:]) == 0  # the header's command: the trial itself
    rerun = _event_scalars(out / "best" / "version_1", "val/loss")
    trial_values = _event_scalars(Path(best.user_attrs["run_dir"]), "val/loss")
    assert len(rerun) == len(trial_values) == 2  # one validation per epoch
    assert rerun == trial_values  # same seed, same keys, same budget, same thread count: the same numbers
    assert min(rerun) == pytest.approx(best.value, rel=1e-6)  # reduce='best': the best validation

    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert {float(r["value"]) for r in rows} == {t.value for t in study.trials}
    assert json.loads((out / "summary.json").read_text())["best"][0]["params"] == best.params
    plots = {p.name for p in (out / "plots").iterdir()}
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        assert {f"{name}.png", f"{name}.html"} <= plots, plots
    assert "plotly.min.js" in plots  # HTML plots open offline


def test_median_pruner_prunes_diverging_learning_rates(tmp_path, classifier_fit):
    # Half the rates diverge (val/loss >= 1.3 after one epoch against ~1.0, still finite). Two good
    # rates run first (the pruner's start-up trials), then two diverging ones, then random picks.
    rates = [0.003, 0.01, 1.0, 3.0]
    config = make_config(
        tmp_path, classifier_fit, n_trials=6, sampler={"name": "random"}, seed_per_trial=False,
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        space={"model.init_args.optimizer.lr": {"type": "categorical", "choices": rates}},
        enqueue=[{"model.init_args.optimizer.lr": lr} for lr in rates],
    )
    study = run_study(config, out=lambda line: None)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.COMPLETE]
    diverging = [t for t in trials if t.params["model.init_args.optimizer.lr"] >= 1.0]
    assert len(diverging) >= 2
    for t in diverging:
        assert t.state == TrialState.PRUNED, (t.params, t.state, t.intermediate_values)
        assert list(t.intermediate_values) == [0]  # stopped at the first validation (epoch 0) of 3
    assert study.best_trial.params["model.init_args.optimizer.lr"] < 1.0


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, classifier_fit):
    # Trial 0 raises in the model's constructor, trial 1 diverges to NaN, trial 2 is SIGKILLed
    # as the out-of-memory killer would, trial 3 trains normally. The study maximizes val/acc, which
    # stays finite (chance level) in the diverged trial: its NaN val/loss still fails it.
    config = make_config(
        tmp_path, classifier_fit, n_trials=4, pruner="none", sampler={"name": "random"}, metrics={"val/acc": "maximize"},
        overrides={"trainer.gradient_clip_val": None, "trainer.max_epochs": 30, "trainer.callbacks": []},
        space={"model.init_args.config.n_heads": {"type": "categorical", "choices": [2, 3]},
               "model.init_args.optimizer.name": {"type": "categorical", "choices": ["adamw", "sgd"]},
               "model.init_args.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e12, "log": True}},
        enqueue=[
            {"model.init_args.config.n_heads": 3, "model.init_args.optimizer.name": "adamw", "model.init_args.optimizer.lr": 1e-2},
            {"model.init_args.config.n_heads": 2, "model.init_args.optimizer.name": "sgd", "model.init_args.optimizer.lr": 1e12},
            {"model.init_args.config.n_heads": 2, "model.init_args.optimizer.name": "adamw", "model.init_args.optimizer.lr": 1e-3},
            {"model.init_args.config.n_heads": 2, "model.init_args.optimizer.name": "adamw", "model.init_args.optimizer.lr": 1e-2},
        ],
    )
    killer = threading.Thread(target=_kill_trial, args=(tmp_path / "study" / "trial_0002",), daemon=True)
    killer.start()
    lines: list[str] = []
    study = run_study(config, out=lines.append)
    killer.join(timeout=1)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    reasons = [t.user_attrs["fail_reason"] for t in trials[:3]]
    # jsonargparse's nested Union report cut to the line that matters, in the progress line too
    assert reasons[0].startswith("ValueError: TransformerConfig.n_heads=3 must divide d_model=16; use one of")
    assert "Union" not in reasons[0] and "\n" not in reasons[0]
    assert f"({reasons[0]})" in next(line for line in lines if line.startswith("trial 0 "))
    assert "NonFiniteMetricError" in reasons[1] and "val/loss became nan" in reasons[1]
    assert "(the trial diverged; its val/acc=" in reasons[1]
    assert "killed by SIGKILL" in reasons[2] and "out of memory" in reasons[2]
    assert trials[3].values is not None and trials[3].user_attrs["fail_reason"] is None
    startup = trials[3].user_attrs["startup_s"]  # from the trial's start to its first training step
    assert 0 < startup < trials[3].duration.total_seconds()
    assert f"(start {startup:.1f}s)" in next(line for line in lines if line.startswith("trial 3 "))


def _kill_trial(run_dir: Path, timeout: float = 120.0) -> None:
    """SIGKILL the trial process once it has started training (its pid file and event file exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid_file = run_dir / "trial.pid"
        if pid_file.is_file() and list(run_dir.glob("events.out.tfevents.*")):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            return
        time.sleep(0.05)


def test_step_budget_prunes_at_global_steps(tmp_path, lm_fit):
    # The char LM trains for max_steps with val_check_interval (all validations in one epoch):
    # reports go at global_step 10, 20, 30, and a diverging rate (val/loss ~120 against ~4) is
    # pruned at the first one.
    config = make_config(
        tmp_path, lm_fit, n_trials=2, sampler={"name": "random"}, seed_per_trial=False,
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        space={"model.init_args.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e3, "log": True}},
        enqueue=[{"model.init_args.optimizer.lr": lr} for lr in (1e-2, 3.0)],
    )
    study = run_study(config, out=lambda line: None)
    good, bad = study.get_trials(deepcopy=False)
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [10, 20, 30]
    assert bad.state == TrialState.PRUNED and sorted(bad.intermediate_values) == [10]
    assert bad.intermediate_values[10] > good.intermediate_values[10]


def test_multi_objective_nas_reports_the_pareto_front_under_a_budget(tmp_path, classifier_fit):
    # Loss against parameter count and measured latency; widths over max_params are pruned untrained.
    config = make_config(
        tmp_path, classifier_fit, n_trials=4, sampler={"name": "nsga2", "seed": 0}, pruner="none", plots=True,
        metrics={"val/loss": "minimize", "params": "minimize", "latency_ms": "minimize"},
        max_params=20_000, latency={"batch_size": 1, "seq_len": 16, "warmup": 1, "iters": 3},
        space={"model.init_args.config.d_model": {"type": "categorical", "choices": [16, 32, 128]},
               "model.init_args.config.mlp": {"type": "categorical", "choices": ["gelu", "swiglu"]}},
        enqueue=[{"model.init_args.config.d_model": 128, "model.init_args.config.mlp": "gelu"},
                 {"model.init_args.config.d_model": 16, "model.init_args.config.mlp": "gelu"},
                 {"model.init_args.config.d_model": 32, "model.init_args.config.mlp": "swiglu"}],
    )
    study, summary, _ = tune(config, out=lambda line: None)
    trials = study.get_trials(deepcopy=False)
    too_big = trials[0]
    assert too_big.state == TrialState.PRUNED and too_big.user_attrs["params"] > 20_000
    assert too_big.user_attrs["constraint"] == [too_big.user_attrs["params"] - 20_000.0]  # Optuna constraint
    assert not list((tmp_path / "study" / "trial_0000").glob("events.out.tfevents.*"))  # never trained
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 2
    for t in done:
        loss, params, latency = t.values
        assert params == t.user_attrs["params"] <= 20_000 and latency > 0
    front = {b["number"] for b in summary["best"]}
    assert front == {t.number for t in study.best_trials}
    out = tmp_path / "study"
    assert {p.name for p in (out / "pareto").glob("*.yaml")} == {f"trial_{n:04d}.yaml" for n in front}
    best = yaml.safe_load((out / "best.yaml").read_text())  # the front trial best on the first objective
    first = min(study.best_trials, key=lambda t: t.values[0])
    assert best["model"]["init_args"]["config"]["d_model"] == first.params["model.init_args.config.d_model"]
    assert {"pareto_front.png", "pareto_front.html"} <= {p.name for p in (out / "plots").iterdir()}
