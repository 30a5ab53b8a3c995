"""Tune YAML files: every shipped one parses and fits its fit config; every bad one fails before a trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from tune_utils import write_tune

from nl_lightning.commands import tune as tune_command
from nl_lightning.tune.config import TuneConfig, load_tune_config
from nl_lightning.tune.model_size import count_parameters
from nl_lightning.tune.samplers import build_pruner, build_sampler
from nl_lightning.tune.study import prepare
from nl_lightning.tune.validate import load_fit_yaml

TUNE_CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "tune").glob("*.yaml"))
LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}


def test_shipped_tune_configs_exist():
    assert {"char_lm", "classifier", "nas", "nas_lm", "multi_objective"} <= {p.stem for p in TUNE_CONFIGS}


@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_tune_config_parses_and_fits_its_fit_config(path, tmp_path):
    config = load_tune_config(path, output_dir=str(tmp_path))
    prepared = prepare(config, str(path))  # every key and value checked against LightningCLI's parser
    assert prepared.study_name == path.stem and prepared.launcher == "forkserver"
    assert prepared.storage_url == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    if config.max_params is not None:  # NAS presets: sampled architectures build, the budget binds
        counts = _sampled_parameter_counts(config, prepared.base, n=6)
        assert min(counts) <= config.max_params < max(counts), counts


def _sampled_parameter_counts(config: TuneConfig, base: dict, n: int) -> list[int]:
    from nl_lightning.tune.fit_config import compose

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=config.directions)
    counts = []
    for _ in range(n):
        trial = study.ask()
        fit = compose(base, config.overrides, config.search_space.sample(trial), 0)
        counts.append(count_parameters(fit["model"]))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return counts


@pytest.fixture
def fit_path(tmp_path) -> Path:
    return Path(__file__).parents[2] / "configs" / "classifier.yaml"


BAD_FILES = [
    ("unknown key", {"space": {"model.init_args.optimizer.lrr": LR}},
     r"search space key 'model.init_args.optimizer.lrr' is not a setting of the fit config .*model.optimizer: (Option 'lrr' is not accepted|Validation failed: Key 'lrr' is not expected)"),  # the second: jsonargparse < 4.42
    ("bad type", {"space": {"model.init_args.config.d_model": {"type": "float", "low": 16, "high": 64}}},
     r"search space key 'model.init_args.config.d_model': value 16.0 \(float\) is not valid .*Expected a <class 'int'>"),
    ("bad choice", {"space": {"model.init_args.pooling": {"type": "categorical", "choices": ["mean", "max"]}}},
     # jsonargparse < 4.42 says only "Cannot take a Union of no types" (the floors job runs 4.39)
     r"'model.init_args.pooling': value 'max' \(str\) is not valid .*(Literal\['mean', 'cls', 'attention', 'gem', 'pooler'\]|Union of no types)"),
    ("low > high", {"space": {"model.init_args.optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}}},
     r"parameter 'model.init_args.optimizer.lr': low=0.1 > high=0.01; swap them"),
    ("log with low <= 0", {"space": {"model.init_args.optimizer.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}},
     r"log=true needs low > 0, got low=0; use a positive low"),
    ("empty choices", {"space": {"model.init_args.pooling": {"type": "categorical", "choices": []}}},
     r"parameter 'model.init_args.pooling': choices=\[\] must be a non-empty list"),
    ("unknown sampler", {"sampler": "cmaes"}, r"sampler='cmaes' is not supported; choose one of \['auto', 'tpe', 'random', 'nsga2'\]"),
    ("unknown pruner", {"pruner": {"name": "asha"}}, r"pruner='asha' is not supported; choose one of \['auto', 'median', 'hyperband', 'none'\]"),
    ("bad pruner argument", {"pruner": {"name": "median", "warmup": 3}}, r"pruner 'median': unknown argument\(s\) \['warmup'\]; MedianPruner takes"),
    ("pruning several objectives", {"metrics": {"val/loss": "minimize", "params": "minimize"}, "pruner": "median"},
     r"pruner='median' needs a single objective"),
    ("bad direction", {"metrics": {"val/loss": "min"}}, r"metrics\['val/loss'\]='min' must be 'minimize' or 'maximize'"),
    ("no logged metric", {"metrics": {"params": "minimize"}}, r"needs at least one metric the model logs in validation"),
    ("no budget", {"n_trials": None}, r"Set n_trials, timeout or both"),
    ("unknown tune key", {"n_trial": 3}, r"unknown key\(s\) \['n_trial'\]; valid keys are"),
    ("bad override", {"overrides": {"trainer.max_epochz": 3}}, r"overrides key 'trainer.max_epochz' .*Group 'trainer' does not accept (option|nested key) 'max_epochz'"),
    ("missing fit config", {"fit_config": "no_such_fit.yaml"}, r"fit_config no_such_fit.yaml does not exist"),
    ("enqueue unknown parameter", {"enqueue": [{"lr": 0.1}]}, r"enqueue\[0\]=\{'lr': 0.1\} must map parameter names .*unknown: \['lr'\]"),
]


@pytest.mark.parametrize(("what", "changes", "match"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_tune_file_fails_before_any_trial(tmp_path, fit_path, what, changes, match):
    data = {"fit_config": str(fit_path), "n_trials": 2, "output_dir": str(tmp_path / "study"),
            "space": {"model.init_args.optimizer.lr": LR}}
    data.update(changes)
    path = write_tune(tmp_path / "bad.yaml", **data)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        tune_command.main(["--config", str(path)])
    assert not (tmp_path / "study").exists()  # nothing was started


def test_samplers_and_pruners_are_optunas_own():
    assert isinstance(build_sampler("auto", 1, seed=0), optuna.samplers.TPESampler)
    assert isinstance(build_sampler("auto", 2, seed=0), optuna.samplers.NSGAIISampler)
    assert isinstance(build_sampler({"name": "random", "seed": 3}, 1), optuna.samplers.RandomSampler)
    assert isinstance(build_pruner("auto", 1), optuna.pruners.MedianPruner)
    assert isinstance(build_pruner("auto", 2), optuna.pruners.NopPruner)
    hyperband = build_pruner({"name": "hyperband", "min_resource": 1, "reduction_factor": 3}, 1)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)


def test_relative_fit_config_is_read_beside_the_tune_file(tmp_path):
    shipped = yaml.safe_load(TUNE_CONFIGS[0].read_text())["fit_config"]
    assert shipped.startswith("../")  # shipped files work from any working directory
    config = load_tune_config(TUNE_CONFIGS[0])
    assert Path(config.fit_config).resolve() == (TUNE_CONFIGS[0].parent / shipped).resolve()
    assert load_fit_yaml(config.fit_config)["model"]
