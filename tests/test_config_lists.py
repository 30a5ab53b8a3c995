"""Loggers and callbacks of several --config files compose; one item is changed by index or class name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nl_lightning.cli import build_cli
from nl_lightning.config_lists import compose_lists
from nl_lightning.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FIT = str(CONFIGS / "classifier.yaml")
TRACK = CONFIGS / "track"


def _trainer_lists(argv: list[str]) -> dict:
    composed = compose_lists(argv)
    i = len(composed) - 1 - composed[::-1].index("--config")
    return yaml.safe_load(composed[i + 1])["trainer"]


def _classes(entries: list[dict]) -> list[str]:
    return [e["class_path"].rsplit(".", 1)[-1] for e in entries]


def test_two_track_fragments_give_both_backends():
    lists = _trainer_lists(["fit", "--config", FIT, "--config", str(TRACK / "tensorboard.yaml"),
                            "--config", str(TRACK / "mlflow.yaml")])
    # the fit config's own logger is replaced by the fragments'; mlflow.yaml brings metrics.csv too
    assert _classes(lists["logger"]) == ["TensorBoardLogger", "CSVLogger", "MLFlowLogger"]
    assert _classes(lists["callbacks"]) == ["ModelCheckpoint", "EarlyStopping", "LearningRateMonitor"]


def test_fragment_callbacks_append_and_a_logger_class_appears_once():
    lists = _trainer_lists(["fit", "--config", FIT, "--config", str(TRACK / "mlflow.yaml"), "--config",
                            str(TRACK / "wandb.yaml"), "--config", str(TRACK / "confusion_matrix.yaml"),
                            "--config", str(TRACK / "registry.yaml")])
    assert _classes(lists["logger"]) == ["CSVLogger", "MLFlowLogger", "WandbLogger"]
    assert _classes(lists["callbacks"])[3:] == ["ConfusionMatrixMonitor", "ModelRegistryCallback"]


def test_built_trainer_has_every_fragments_logger_and_the_item_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", FIT, "--config", str(TRACK / "tensorboard.yaml"), "--config", str(TRACK / "csv.yaml"),
                     "--trainer.callbacks.EarlyStopping.patience=7", "--trainer.callbacks.0.init_args.save_top_k=2",
                     "--trainer.logger.CSVLogger.flush_logs_every_n_steps", "5", "--trainer.max_epochs=1"], run=False)
    assert [type(lg) for lg in cli.trainer.loggers] == [TensorBoardLogger, CSVLogger]
    assert cli.trainer.loggers[1]._flush_logs_every_n_steps == 5
    callbacks = {type(c): c for c in cli.trainer.callbacks}
    assert callbacks[EarlyStopping].patience == 7
    assert callbacks[ModelCheckpoint].save_top_k == 2
    assert LearningRateMonitor in callbacks and cli.trainer.max_epochs == 1  # the rest is untouched


def test_one_config_is_passed_through_unchanged():
    argv = ["fit", "--config", FIT, "--trainer.max_epochs=1"]
    assert compose_lists(argv) == argv


@pytest.mark.parametrize(
    "arg, match",
    [
        ("--trainer.callbacks.7.init_args.patience=1", r"trainer\.callbacks has 3 entries \(0: ModelCheckpoint, 1: "
                                                       r"EarlyStopping, 2: LearningRateMonitor\); no index 7"),
        ("--trainer.callbacks.Foo.x=1", r"trainer\.callbacks has no Foo entries \(0: ModelCheckpoint"),
        ("--trainer.callbacks.EarlyStopping.patience", r"needs a value"),
    ],
)
def test_item_override_errors_name_the_entries(arg, match):
    with pytest.raises(ConfigError, match=match):
        compose_lists(["fit", "--config", FIT, arg])


def test_two_entries_of_one_class_need_an_index(tmp_path):
    extra = tmp_path / "more.yaml"
    extra.write_text("trainer:\n  callbacks+:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
                     "      init_args: {monitor: val/acc, mode: max}\n")
    with pytest.raises(ConfigError, match=r"has 2 EarlyStopping entries .*name one by its class or its index"):
        compose_lists(["fit", "--config", FIT, "--config", str(extra), "--trainer.callbacks.EarlyStopping.patience=1"])
    lists = _trainer_lists(["fit", "--config", FIT, "--config", str(extra), "--trainer.callbacks.3.patience=1"])
    assert lists["callbacks"][3]["init_args"] == {"monitor": "val/acc", "mode": "max", "patience": 1}


def test_a_fragments_callbacks_list_replaces_the_fit_configs_and_plus_appends(tmp_path):
    only = tmp_path / "only.yaml"
    only.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.RichModelSummary\n")
    lists = _trainer_lists(["fit", "--config", FIT, "--config", str(only), "--config", str(TRACK / "confusion_matrix.yaml")])
    assert _classes(lists["callbacks"]) == ["RichModelSummary", "ConfusionMatrixMonitor"]
