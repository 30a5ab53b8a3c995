"""nl_lightning/_compat.py: every private Lightning / Optuna access, exercised against the installed
versions, and those versions inside the range the module was checked against. A release that moves
one of them fails here (widen the range only after reading the new source behind each function)."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import lightning as L
import optuna
import pytest
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import Logger, MLFlowLogger
from packaging.specifiers import SpecifierSet

from nl_lightning import _compat
from nl_lightning.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("package", "checked"), [("lightning", _compat.LIGHTNING_CHECKED),
                                                  ("optuna", _compat.OPTUNA_CHECKED)])
def test_installed_version_is_one_the_private_accesses_were_checked_against(package, checked):
    assert version(package) in SpecifierSet(checked), (
        f"{package} {version(package)} is outside {checked}, the versions nl_lightning/_compat.py was checked "
        "against: read the new source behind each of its functions, then widen the range")


class _Recorder(Logger):
    """Every ``log_metrics`` call: (metrics, step)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict[str, float], int]] = []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class _TwoOptimizerSteps(L.LightningModule):
    """Manual optimization stepping two optimizers per batch: global_step advances by 2 per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):
        for opt, layer in zip(self.optimizers(), (self.a, self.b)):
            opt.zero_grad()
            self.manual_backward(layer(batch[0]).pow(2).mean())
            opt.step()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.a(batch[0]).pow(2).mean())

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.seen.append((_compat.logged_step(self.trainer), self.trainer.global_step))

    def configure_optimizers(self):
        return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]


def _loader():
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(default_root_dir=tmp_path, accelerator="cpu", enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, **kwargs)


def test_logged_step_is_the_step_lightning_logs_validation_metrics_at(tmp_path):
    recorder, module = _Recorder(), _TwoOptimizerSteps()
    _trainer(tmp_path, logger=recorder, max_epochs=1, val_check_interval=2).fit(module, _loader(), _loader())
    val_steps = [step for names, step in recorder.calls if "val/loss" in names]
    assert [logged for logged, _ in module.seen] == val_steps == [1, 3]
    assert [global_step for _, global_step in module.seen] == [4, 8]  # why trainer.global_step would not do


def test_set_available_flops_reaches_lightning_s_mfu(tmp_path):
    class Peak(ThroughputMonitor):
        def setup(self, trainer, pl_module, stage):
            super().setup(trainer, pl_module, stage)
            _compat.set_available_flops(self, 1e6)

    module = _TwoOptimizerSteps()
    module.flops_per_batch = 1000
    recorder = _Recorder()
    monitor = Peak(batch_size_fn=lambda batch: batch[0].shape[0], window_size=2)
    _trainer(tmp_path, logger=recorder, max_steps=4, limit_val_batches=0, log_every_n_steps=1,
             callbacks=[monitor]).fit(module, _loader())
    rows = [m for m, _ in recorder.calls if "train/device/mfu" in m]
    assert rows and monitor.available_flops == 1e6
    for row in rows:
        assert row["train/device/mfu"] == pytest.approx(row["train/device/flops_per_sec"] / 1e6)


def test_mlflow_tracking_uri_is_the_uri_the_logger_was_given(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _compat.mlflow_tracking_uri(MLFlowLogger(tracking_uri=uri)) == uri


def test_lr_attr_name_finds_the_module_s_or_its_hparams_rate():
    class WithLr(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lr = 0.1

    class WithHparams(L.LightningModule):
        def __init__(self, learning_rate: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()

    assert _compat.lr_attr_name(WithLr()) == "lr"
    assert _compat.lr_attr_name(WithHparams()) == "learning_rate"
    with pytest.raises(AttributeError, match=r"should have one of these fields: \(.lr., .learning_rate.\)"):
        _compat.lr_attr_name(L.LightningModule())


def test_trial_id_rebuilds_the_same_trial():
    study = optuna.create_study()
    study.ask()
    trial = study.ask()
    rebuilt = optuna.Trial(study, _compat.trial_id(trial))
    rebuilt.suggest_float("x", 0, 1)
    assert rebuilt.number == trial.number == 1
    assert "x" in study.trials[1].params


def test_lightning_cli_still_calls_the_checkpoint_hook_we_override(monkeypatch, capsys):
    """cli.py checks --ckpt_path in LightningCLI._parse_ckpt_path, before Lightning reads the file: if
    Lightning stopped calling that method, checkpoints would be unpickled unchecked."""
    from nl_lightning.cli import main

    def refuse(path, model, subcommand, trust=()):
        raise ConfigError(f"checked {Path(path).name} for {subcommand}")

    monkeypatch.setattr("nl_lightning.resume.check_checkpoint_against_config", refuse)
    monkeypatch.setattr(sys, "argv", ["nl-lightning"])
    assert main(["fit", "--config", str(REPO / "configs" / "char_lm.yaml"), "--ckpt_path", str(REPO / "README.md")]) == 1
    assert "checked README.md for fit" in capsys.readouterr().err
