"""LastCheckpoint: with `monitor` set, last.ckpt is still the state at the end of the run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.callbacks import LastCheckpoint
from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import TransformerClassifier


def _fit(tmp_path, callbacks, **trainer):
    L.seed_everything(0, verbose=False)
    model = TransformerClassifier(dict(input_dim=8, n_layers=1, d_model=16, n_heads=2, max_seq_len=16,
                                       position="none", causal=False), num_classes=3)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="val/acc", mode="max", save_last=True)
    fit = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_train_batches=4,
                    limit_val_batches=1, callbacks=[checkpoint, *callbacks], **trainer)
    fit.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=16))
    return fit, model, torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)


@pytest.mark.parametrize("run", [
    dict(max_epochs=3, check_val_every_n_epoch=2),  # no validation (hence no save) in the last epoch
    dict(max_steps=10),  # stops mid-epoch, two steps after the last validation
], ids=["validating-every-2-epochs", "max_steps-mid-epoch"])
def test_last_ckpt_is_the_state_at_the_end_of_the_run(run, tmp_path):
    trainer, model, last = _fit(tmp_path, [LastCheckpoint()], **run)
    assert last["global_step"] == trainer.global_step and last["epoch"] == trainer.current_epoch
    torch.testing.assert_close(last["state_dict"], model.state_dict(), rtol=0, atol=0)
    states = [s for k, s in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert states[0]["last_model_path"] == str(tmp_path / "ckpt" / "last.ckpt")
    assert states[0]["best_model_path"]  # the best is still recorded (`--ckpt_path best` reads it)


def test_without_it_lightning_leaves_last_ckpt_behind(tmp_path):
    """Pins why the callback exists: if Lightning starts keeping last.ckpt current itself, this fails
    and the callback can go."""
    trainer, _, last = _fit(tmp_path, [], max_steps=10)
    assert last["global_step"] < trainer.global_step
