"""The learning-rate range test: `nl-lightning lr-find` and the LRFinder callback, on Lightning's tuner."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import yaml
from images import assert_plotted

from nl_lightning.callbacks import LRFinder
from nl_lightning.cli import build_cli
from nl_lightning.commands import lr_find
from nl_lightning.errors import ConfigError


def test_lr_find_command_writes_the_curve_and_a_fit_config_with_the_rate(tmp_path, classifier_fit):
    out = tmp_path / "lr"
    # Our options and fit arguments mix freely; 30 steps need more batches than the tiny config's 4 x 3.
    assert lr_find.main(["--config", str(classifier_fit), "--num_training", "30", "--min_lr", "1e-5",
                         "--trainer.limit_train_batches=1.0", "--max_lr=1.0", "--trainer.max_epochs", "10",
                         "--output_dir", str(out)]) == 0
    result = json.loads((out / "lr_find.json").read_text())
    lr = result["suggested_lr"]
    rates, losses = np.array(result["lr"]), np.array(result["loss"])
    # The curve: 30 rates from min_lr, from the second on each (max_lr / min_lr) ** (1 / 30) times the last
    # (exponential mode) until the loss diverges (4x its best), each with its smoothed loss.
    assert len(rates) == len(losses) >= 20 and rates[0] == 1e-5 and np.isfinite(losses).all()
    np.testing.assert_allclose(rates[2:] / rates[1:-1], 1e5 ** (1 / 30), rtol=1e-9)
    # The suggestion: the rate where the loss falls fastest against the rate (skipping the first 10
    # points and the last one), the rule Lightning's LR finder states, read off the written curve.
    slope = np.gradient(losses[10:-1], rates[10:-1])
    assert lr == rates[10 + int(np.argmin(slope))] and slope.min() < 0  # where the loss falls
    assert_plotted(out / "lr_find.png")
    fit = yaml.safe_load((out / "fit.yaml").read_text())
    assert fit["model"]["init_args"]["optimizer"]["lr"] == lr
    # The written config is a complete fit config: it builds, and the model trains with that rate.
    cli = build_cli(["--config", str(out / "fit.yaml")], run=False)
    assert cli.model.optimizer_config.lr == lr


def test_lr_find_command_errors(tmp_path, classifier_fit):
    with pytest.raises(ConfigError, match="needs a fit config: --config"):
        lr_find.main(["--num_training", "10"])
    with pytest.raises(ConfigError, match=r"lr-find needs 0 < min_lr < max_lr, got min_lr=1.0, max_lr=0.1"):
        lr_find.main(["--config", str(classifier_fit), "--min_lr", "1.0", "--max_lr", "0.1"])
    with pytest.raises(ConfigError, match=r"lr-find: --num_training=1: the range test needs at least 2 steps"):
        lr_find.main(["--config", str(classifier_fit), "--num_training", "1"])
    with pytest.raises(ValueError, match=r"lr_key='model.init_args.lr' is not a setting of this fit config"):
        lr_find.main(["--config", str(classifier_fit), "--lr_key", "model.init_args.lr", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("update_attr", [True, False])
def test_lr_finder_callback_trains_with_the_suggested_rate(tmp_path, classifier_fit, update_attr):
    cli = build_cli(["--config", str(classifier_fit), "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.logger.init_args.save_dir", str(tmp_path)], run=False)
    configured = cli.model.optimizer_config.lr
    finder = LRFinder(min_lr=1e-5, max_lr=1.0, num_training_steps=20, update_attr=update_attr)
    trainer = L.Trainer(**{**_trainer_kwargs(cli), "callbacks": [finder]})
    trainer.fit(cli.model, datamodule=cli.datamodule)
    assert finder.suggested_lr is not None
    expected = finder.suggested_lr if update_attr else configured
    assert cli.model.optimizer_config.lr == expected
    assert cli.model.hparams["optimizer"]["lr"] == expected  # what the checkpoint records
    # The optimizer and its schedule were rebuilt around the rate (not only the attribute set).
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == [expected] * 2
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == expected
    log_dir = tmp_path / "classifier" / "version_0"
    assert json.loads((log_dir / "lr_find.json").read_text())["suggested_lr"] == finder.suggested_lr
    assert (log_dir / "lr_find.png").is_file()


def _trainer_kwargs(cli) -> dict:
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cli.trainer
    # 5 epochs of 7 batches: room for the 20-step range test, which runs inside fit's own loop.
    return dict(max_epochs=5, limit_val_batches=t.limit_val_batches,
                logger=TensorBoardLogger(save_dir=t.logger.save_dir, name="classifier"), enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, default_root_dir=t.default_root_dir)


def test_lr_finder_rejects_bad_ranges():
    with pytest.raises(ValueError, match=r"0 < min_lr < max_lr, got min_lr=0.1, max_lr=0.01"):
        LRFinder(min_lr=0.1, max_lr=0.01)
    with pytest.raises(ValueError, match=r"LRFinder: num_training_steps=1: the range test needs at least 2 steps"):
        LRFinder(num_training_steps=1)
