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
