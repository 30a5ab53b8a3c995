"""The fit config of a trial and of best.yaml: budget overrides are trial-only, DataLoader workers
are off in trials; and plots label parameters by short names."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from nl_lightning.tune.fit_config import best_fit_config, trial_fit_config, trial_only
from nl_lightning.tune.plots import readable, save_plots
from nl_lightning.tune.progress import short_names
from tune_utils import make_config

CONFIGS = Path(__file__).parents[2] / "configs"
HDF5 = yaml.safe_load((CONFIGS / "classifier_hdf5.yaml").read_text())


def _with_workers(n: int) -> dict:
    base = yaml.safe_load((CONFIGS / "classifier_hdf5.yaml").read_text())
    base["data"]["init_args"]["num_workers"] = n
    return base


def test_trials_load_data_in_process_and_best_yaml_keeps_the_workers(tmp_path):
    base = _with_workers(2)
    trial = trial_fit_config(base, {}, {}, 0, tmp_path / "trial_0000")
    assert trial["data"]["init_args"]["num_workers"] == 0
    assert best_fit_config(base, {}, {}, 0, tmp_path)["data"]["init_args"]["num_workers"] == 2
    kept = trial_fit_config(base, {"data.init_args.num_workers": 2}, {}, 0, tmp_path / "trial_0000")
    assert kept["data"]["init_args"]["num_workers"] == 2  # an explicit override wins
    assert trial_fit_config(_with_workers(0), {}, {}, 0, tmp_path / "t")["data"]["init_args"]["num_workers"] == 0


def test_budget_overrides_are_trial_only():
    overrides = {"trainer.max_epochs": 2, "trainer.limit_train_batches": 4, "model.init_args.config.max_seq_len": 32,
                 "trainer.callbacks.1.init_args.patience": 1}
    assert trial_only(HDF5, overrides) == {"trainer.max_epochs": 2, "trainer.limit_train_batches": 4}
    best = best_fit_config(HDF5, overrides, {}, 0, Path("out"))
    assert best["trainer"]["max_epochs"] == HDF5["trainer"]["max_epochs"] and "limit_train_batches" not in best["trainer"]
    assert best["model"]["init_args"]["config"]["max_seq_len"] == 32  # not a budget: kept
    assert best["trainer"]["callbacks"][1]["init_args"]["patience"] == 1


def test_short_names_stay_unique():
    keys = ["model.init_args.optimizer.lr", "model.init_args.config.dropout", "teacher.init_args.config.dropout",
            "data.init_args.batch_size"]
    assert short_names(keys) == {"model.init_args.optimizer.lr": "optimizer.lr",
                                 "model.init_args.config.dropout": "model.config.dropout",
                                 "teacher.init_args.config.dropout": "teacher.config.dropout",
                                 "data.init_args.batch_size": "data.batch_size"}


def test_plots_label_parameters_by_short_names(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    space = {"model.init_args.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
             "model.init_args.config.n_layers": {"type": "int", "low": 1, "high": 3}}

    def objective(trial):
        return trial.suggest_float("model.init_args.optimizer.lr", 1e-4, 1e-1, log=True) * trial.suggest_int(
            "model.init_args.config.n_layers", 1, 3)

    study.optimize(objective, n_trials=4)
    copy = readable(study)
    assert [t.params for t in copy.trials] == [
        {"optimizer.lr": t.params["model.init_args.optimizer.lr"], "config.n_layers": t.params["model.init_args.config.n_layers"]}
        for t in study.trials]
    assert [t.value for t in copy.trials] == [t.value for t in study.trials]
    config = make_config(tmp_path, tmp_path / "fit.yaml", space=space, plots=True)
    files, _ = save_plots(study, config, tmp_path / "plots")
    html = (tmp_path / "plots" / "parallel_coordinate.html").read_text()
    assert "optimizer.lr" in html and "model.init_args.optimizer.lr" not in html
    assert (tmp_path / "plots" / "parallel_coordinate.png") in files


def test_parallel_coordinate_and_slice_plots_stay_readable_with_long_keys(tmp_path, monkeypatch):
    """The shipped classifier search space: Optuna cuts axis names at 20 characters ('optimizer.weight_...')
    and draws its PNG at a fixed width, where 9 axes' tick values run into each other."""
    from nl_lightning.tune import plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = yaml.safe_load((CONFIGS / "tune" / "classifier.yaml").read_text())["space"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        wd = trial.suggest_float("model.init_args.optimizer.weight_decay", 1e-4, 0.1, log=True)
        return wd + trial.suggest_int("model.init_args.config.n_layers", 1, 3) + trial.suggest_categorical(
            "model.init_args.pooling", ["mean", "gem"]).startswith("g") + trial.suggest_float(
            "model.init_args.optimizer.lr", 1e-4, 1e-2, log=True)

    study.optimize(objective, n_trials=6)
    drawn = {}

    def keep(figure, path, **kwargs):
        labels = next(a.get_xticklabels() for a in figure.axes if a.get_xticklabels())
        drawn[path.name] = ([t.get_text() for t in labels], figure.get_figwidth(), figure.get_figheight())
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    config = make_config(tmp_path, tmp_path / "fit.yaml", space=space, plots=True)
    files, skipped = save_plots(study, config, tmp_path / "plots")
    assert skipped == [] and {"slice.png", "slice.html", "parallel_coordinate.png"} <= {f.name for f in files}
    names = ["config.n_layers", "model.pooling", "optimizer.lr", "optimizer.weight_decay"]
    labels, width, height = drawn["parallel_coordinate.png"]
    assert labels == ["Objective Value", *names]  # in full, not 'optimizer.weight_...'
    assert width >= 1.3 * len(labels) + 2.0 and height < width / 1.5
    html = (tmp_path / "plots" / "parallel_coordinate.html").read_text()
    assert '"optimizer.weight_decay"' in html and "weight_..." not in html
    assert '"tickangle":-25' in html or '"labelangle":-25' in html  # Optuna 5 draws lines, Optuna 4 parcoords
    slice_html = (tmp_path / "plots" / "slice.html").read_text()
    assert all(name in slice_html for name in names) and "model.init_args" not in slice_html
